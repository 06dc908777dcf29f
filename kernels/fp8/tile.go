package fp8

import (
	"fmt"
	"math"

	"github.com/herdml/herd/kernels/cpu"
)

// TileWidth is how many consecutive values of a row share one scale in TileCodec: the 1×128
// activation tiles of DeepSeek-V3 (arXiv 2412.19437, §3.3, "Fine-Grained Quantization").
const TileWidth = 128

// TileCodec keeps float32 activations that a backward pass reads as E4M3 codes with one
// scale per 1×TileWidth tile of a row (the last tile of a row is narrower when the row's
// width is not a multiple of TileWidth), 1 + 4/128 bytes per value instead of 4. Each
// tile's scale is set just in time from the tile's own amax, so an outlier costs the
// precision of its 127 neighbours only, not of the whole tensor, and no amax history is
// needed: DeepSeek-V3 caches its SwiGLU inputs this way, and COAT (arXiv 2410.19313) stores
// the activations of its non-linear layers with per-group scales too.
//
// The scale is the recipes' rule with margin 0 (computeScale): fp8_max / amax, clamped to
// [2^-126, 2^126], and 1 for an all-zero tile or one holding a NaN or ±Inf, so a scale and
// its inverse are always finite. Values are encoded with SatFinite: NaN stays NaN (0x7F),
// ±Inf becomes ±448·scale⁻¹ (a step that made one is lost anyway; the trainer stops on its
// non-finite loss).
//
// A matrix of rows × cols values has codes [rows·cols] and scaleInv [rows·Scales(cols)]
// (the inverse scales, row by row); a row range [lo, hi) of it is codes[lo·cols:hi·cols]
// and scaleInv[lo·s:hi·s] with s = Scales(cols), so parts of a matrix (an expert's rows)
// are encoded and decoded on their own.
type TileCodec struct{}

// Scales returns how many scales a row of cols values has: ⌈cols / TileWidth⌉.
func (TileCodec) Scales(cols int) int { return (cols + TileWidth - 1) / TileWidth }

// Encode writes the E4M3 codes of src, rows of cols values, to codes and the inverse
// scale of each tile to scaleInv: src[i] ≈ Decode(codes[i])·scaleInv[tile of i]. A tile is
// read twice while it is in the L1 cache (its amax, then the vectorised encoder of
// Quantize), so the tensor is read from memory once; rows run on the CPU kernels' pool.
func (c TileCodec) Encode(codes []uint8, scaleInv []float32, src []float32, cols int) {
	rows := c.check("Encode", len(codes), len(scaleInv), len(src), cols)
	cpu.ParallelFor(rows, rowGrain(cols), tileEncodeTask{codes, scaleInv, src, cols, c.Scales(cols)})
}

// Decode writes dst[i] = Decode(codes[i])·scaleInv[tile of i] for the rows that Encode
// wrote; len(dst) = len(codes).
func (c TileCodec) Decode(dst []float32, codes []uint8, scaleInv []float32, cols int) {
	rows := c.check("Decode", len(codes), len(scaleInv), len(dst), cols)
	cpu.ParallelFor(rows, rowGrain(cols), tileDecodeTask{dst, codes, scaleInv, cols, c.Scales(cols)})
}

// check returns the number of rows of n values in rows of cols, after checking that the
// codes and scales have room for them.
func (c TileCodec) check(op string, ncodes, nscales, n, cols int) int {
	if cols < 1 || n%cols != 0 || ncodes < n || nscales < n/cols*c.Scales(cols) {
		panic(fmt.Sprintf("fp8.TileCodec.%s: %d values in rows of %d, %d codes, %d scales", op, n, cols, ncodes, nscales))
	}
	return n / cols
}

// rowGrain is the fewest rows worth a thread: about grain values.
func rowGrain(cols int) int { return max(1, grain/cols) }

type tileEncodeTask struct {
	codes     []uint8
	scaleInv  []float32
	src       []float32
	cols, nsc int
}

func (t tileEncodeTask) Run(lo, hi int) {
	p := &formats[E4M3]
	for r := lo; r < hi; r++ {
		for j := range t.nsc {
			a, b := r*t.cols+j*TileWidth, r*t.cols+min((j+1)*TileWidth, t.cols)
			x := t.src[a:b]
			scale := computeScale(tileAmax(x), 1, E4M3, 0, false)
			p.encodeSat(t.codes[a:b], nil, x, scale)
			t.scaleInv[r*t.nsc+j] = 1 / scale
		}
	}
}

// tileAmax returns max|x[i]| (NaN if one is NaN, as Amax) with four independent maxima,
// so that the loop is not one long chain of dependent compares.
func tileAmax(x []float32) float32 {
	var m0, m1, m2, m3 uint32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		m0 = max(m0, math.Float32bits(x[i])&0x7FFFFFFF)
		m1 = max(m1, math.Float32bits(x[i+1])&0x7FFFFFFF)
		m2 = max(m2, math.Float32bits(x[i+2])&0x7FFFFFFF)
		m3 = max(m3, math.Float32bits(x[i+3])&0x7FFFFFFF)
	}
	for ; i < len(x); i++ {
		m0 = max(m0, math.Float32bits(x[i])&0x7FFFFFFF)
	}
	return math.Float32frombits(max(m0, m1, m2, m3))
}

type tileDecodeTask struct {
	dst       []float32
	codes     []uint8
	scaleInv  []float32
	cols, nsc int
}

func (t tileDecodeTask) Run(lo, hi int) {
	tab := &formats[E4M3].decode
	for r := lo; r < hi; r++ {
		for j := range t.nsc {
			a, b := r*t.cols+j*TileWidth, r*t.cols+min((j+1)*TileWidth, t.cols)
			dequantizeTask{t.dst[a:b], t.codes[a:b], t.scaleInv[r*t.nsc+j], tab}.Run(0, b-a)
		}
	}
}
