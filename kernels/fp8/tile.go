package fp8

import (
	"fmt"

	"github.com/herdml/herd/kernels"
)

// TileCodec keeps float32 activations that a backward pass reads as E4M3 codes with one
// scale per 1×TileSize tile of a row (the last tile of a row is narrower when the row's
// width is not a multiple of TileSize): 1 + 4/128 bytes per value instead of 4. Each
// tile's scale is set just in time from the tile's own amax, as the blockwise recipe
// scales its activations (the same loops), so an outlier costs the precision of its 127
// neighbours only, and no amax history is needed. DeepSeek-V3 (arXiv 2412.19437, §3.3)
// caches its SwiGLU inputs this way, in FP8 with 1×128 tiles, and COAT (arXiv 2410.19313)
// stores its non-linear layers' activations in FP8 with per-group scales too.
//
// The scale is the recipes' rule with margin 0 (kernels.FP8Scale): fp8_max / amax, clamped to
// [2^-126, 2^126], and 1 for an all-zero tile or one holding a NaN or ±Inf, so a scale and
// its inverse are always finite. Values are encoded with SatFinite: NaN stays NaN (0x7F),
// ±Inf becomes ±448 (a step that made one is lost anyway; the trainer stops on its
// non-finite loss).
//
// A matrix of rows × cols values has codes [rows·cols] and scaleInv [rows·Scales(cols)]
// (the tiles' inverse scales, row after row); rows [lo, hi) of it are codes[lo·cols:hi·cols]
// and scaleInv[lo·s:hi·s] with s = Scales(cols), so a range of rows (an expert's) is
// encoded and decoded on its own.
//
// A TileCodec runs on one backend, whose buffers it encodes and decodes.
type TileCodec struct{ be kernels.Backend[float32] }

// NewTileCodec returns the codec that runs on be.
func NewTileCodec(be kernels.Backend[float32]) TileCodec { return TileCodec{be} }

// Scales returns how many scales a row of cols values has: ⌈cols / TileSize⌉.
func (TileCodec) Scales(cols int) int { return tiles(cols, TileSize) }

// Encode writes the E4M3 codes of src, rows of cols values, to codes and the inverse
// scale of each tile to scaleInv: src[i] ≈ Decode(codes[i])·scaleInv[tile of i]. A tile is
// read twice while it is in the L1 cache (its amax, then the vectorised encoder), so src is
// read from memory once.
func (c TileCodec) Encode(codes kernels.Buf[uint8], scaleInv kernels.Buf[float32], src kernels.Buf[float32], cols int) {
	rows := c.check("Encode", codes.Len(), scaleInv.Len(), src.Len(), cols)
	c.be.QuantizeTiles(kernels.TileQuant{Codes: codes.Slice(0, src.Len()), Src: src, Inv: scaleInv,
		Rows: rows, Cols: cols, TR: 1, TC: TileSize, Mul: 1, Format: E4M3})
}

// Decode writes dst[i] = Decode(codes[i])·scaleInv[tile of i] for the rows that Encode
// wrote; dst.Len() = rows·cols.
func (c TileCodec) Decode(dst kernels.Buf[float32], codes kernels.Buf[uint8], scaleInv kernels.Buf[float32], cols int) {
	rows := c.check("Decode", codes.Len(), scaleInv.Len(), dst.Len(), cols)
	c.be.DequantizeTiles(kernels.TileDequant{Dst: dst, Codes: codes, Inv: scaleInv,
		Rows: rows, Cols: cols, TR: 1, TC: TileSize, Mul: 1, Format: E4M3})
}

// check returns how many rows of cols values n values are, after checking that codes
// and scales have room for them and that c has a backend.
func (c TileCodec) check(op string, ncodes, nscales, n, cols int) int {
	if c.be == nil {
		panic("fp8.TileCodec." + op + ": a TileCodec is made by NewTileCodec, with the backend it runs on")
	}
	if cols < 1 || n%cols != 0 || ncodes < n || nscales < n/cols*c.Scales(cols) {
		panic(fmt.Sprintf("fp8.TileCodec.%s: %d values in rows of %d, %d codes, %d scales", op, n, cols, ncodes, nscales))
	}
	return n / cols
}
