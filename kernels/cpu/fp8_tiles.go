package cpu

// The Backend's tiled FP8 ops, QuantizeTiles and DequantizeTiles: the blockwise recipe's
// operands and the activation codec of kernels/fp8.

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/herdml/herd/kernels"
)

// fp8Tile is the recipes' tile edge: tilings of 1×fp8Tile run the row loops below, many
// whole tiles per assembly call. Any tiling of at most fp8Tile columns, or of one column,
// runs the general loops.
const fp8Tile = kernels.FP8Tile

// tileCount is the number of tiles of edge t that cover n.
func tileCount(n, t int) int { return (n + t - 1) / t }

// tileQuant is a kernels.TileQuant as the loops read it: host slices, nil for the
// outputs not written, and the format's constants.
type tileQuant struct {
	p          *fp8Format
	codes      []uint8   // nil: not kept
	vals, src  []float32 // vals nil: not written; vals may be src (in place)
	inv        []float32 // nil: not kept
	rows, cols int
	tr, tc     int
	mul        float32
	margin     int
	pow2       bool
	amax       *atomic.Uint32
}

// QuantizeTiles: see kernels.Backend. It runs on the worker pool, one band of TR rows per
// task index, and returns the amax of the whole matrix (NaN if any value is NaN). An
// empty matrix has nothing to write, whatever buffers it is given.
func (be *Backend[F]) QuantizeTiles(t kernels.TileQuant) float32 {
	if t.Rows == 0 || t.Cols == 0 {
		return 0
	}
	q := tileQuant{p: &fp8Formats[t.Format], codes: orNil(t.Codes.Host()), vals: orNil(t.Vals.Host()),
		src: t.Src.Host(), inv: orNil(t.Inv.Host()), rows: t.Rows, cols: t.Cols, tr: t.TR, tc: t.TC,
		mul: t.Mul, margin: t.Margin, pow2: t.Pow2}
	if !(t.TR >= 1 && (t.TC == 1 && q.vals != nil || t.TC > 1 && t.TC <= fp8Tile)) || len(q.src) < t.Rows*t.Cols {
		panic(fmt.Sprintf("cpu.QuantizeTiles: %d values for %d×%d in %d×%d tiles, values kept %v",
			len(q.src), t.Rows, t.Cols, t.TR, t.TC, q.vals != nil))
	}
	m := take[atomic.Uint32]()
	defer release(m)
	m.Store(0)
	q.amax = m
	parallelFor(tileCount(q.rows, q.tr), max(1, fp8Grain/(q.tr*q.cols+1)), q)
	return math.Float32frombits(m.Load())
}

// colChunk is how many columns of a band a T×1 tiling scales at a time (stack buffers).
const colChunk = 256

func (q *tileQuant) run(lo, hi int) {
	var m uint32
	if q.rowLoop() && q.cols%fp8Tile == 0 { // the rows are whole tiles one after another
		n, a := q.wholeTiles(lo*q.cols, hi*q.cols, lo*q.cols/fp8Tile)
		lo, m = lo+n/q.cols, a
	}
	for b := lo; b < hi; b++ {
		r0, r1 := b*q.tr, min((b+1)*q.tr, q.rows)
		if q.tc == 1 {
			m = max(m, q.columnTiles(b, r0, r1))
		} else {
			m = max(m, q.rowTiles(b, r0, r1))
		}
	}
	raiseAmax(q.amax, m)
}

// scaleOf is a tile's scale from its amax bits; 1 for an all-zero or non-finite tile.
func (q *tileQuant) scaleOf(a uint32) float32 {
	return kernels.FP8Scale(math.Float32frombits(a), 1, q.p.f, q.margin, q.pow2)
}

// rowLoop says whether q's 1×fp8Tile tiles may go through encodeTilesBulk, whose loop
// does a tile's amax, scale and codes in one pass and many tiles per call (the tiles of
// kernels/fp8's TileCodec: the per-tile calls cost as much as the work on 128 values): it
// scales by the rule with margin 0 and no power of two, and writes codes and inverse
// scales but no values (with values, as the blockwise recipe's row tiles, the loop was no
// faster).
func (q *tileQuant) rowLoop() bool {
	return q.tr == 1 && q.tc == fp8Tile && q.codes != nil && q.vals == nil && q.inv != nil && q.margin == 0 && !q.pow2
}

// wholeTiles quantizes src[i0:i1], whole 1×fp8Tile tiles whose inverse scales go to
// inv[s0:], with encodeTilesBulk, and returns how many values it did (none without its
// loop) and their amax bits. A tile with a NaN got scale 1 there; its NaNs get code 0x7F
// here, as encodeSat gives them.
func (q *tileQuant) wholeTiles(i0, i1, s0 int) (int, uint32) {
	codes, src := q.codes[i0:i1], q.src[i0:i1]
	n, a := encodeTilesBulk(q.p, codes, q.inv[s0:], src)
	if a > 0x7F800000 {
		for i, x := range src[:n] {
			if x != x {
				codes[i] = 0x7F
			}
		}
	}
	return n, a
}

// rowTiles quantizes rows [r0, r1) of band b in tiles q.tc columns wide.
func (q *tileQuant) rowTiles(b, r0, r1 int) uint32 {
	var buf [fp8Tile]uint8
	nt := tileCount(q.cols, q.tc)
	var band uint32
	t0 := 0
	if q.rowLoop() { // r1 = r0+1: the row's whole tiles in one call, then its narrower last one
		i0 := r0 * q.cols
		n, a := q.wholeTiles(i0, i0+q.cols/fp8Tile*fp8Tile, b*nt)
		t0, band = n/fp8Tile, a
	}
	for t := t0; t < nt; t++ {
		c0, c1 := t*q.tc, min((t+1)*q.tc, q.cols)
		var a uint32
		for r := r0; r < r1; r++ {
			a = max(a, amaxBits(q.src[r*q.cols+c0:r*q.cols+c1]))
		}
		band = max(band, a)
		scale := q.scaleOf(a)
		inv := 1 / scale
		if q.inv != nil {
			q.inv[b*nt+t] = inv
		}
		k := inv * q.mul
		for r := r0; r < r1; r++ {
			i0, i1 := r*q.cols+c0, r*q.cols+c1
			c, src := buf[:i1-i0], q.src[i0:i1]
			if q.codes != nil {
				c = q.codes[i0:i1]
			}
			if q.vals == nil {
				q.p.encodeSat(c, nil, src, scale)
				continue
			}
			vals, done := q.vals[i0:i1], 0
			if a <= 0x7F800000 { // no NaN to fix up after the assembly loop
				done = encodeKBulk(q.p, c, vals, src, scale, k)
			}
			q.p.encodeSat(c[done:], nil, src[done:], scale)
			for i := done; i < len(c); i++ {
				vals[i] = q.p.decode[c[i]] * k
			}
		}
	}
	return band
}

// columnTiles quantizes rows [r0, r1) of band b in tiles one column wide: each column of
// the band is a tile. It scales colChunk columns at a time with a scale and a scale-back
// per column; x·scale is rounded to float32 before encoding with scale 1, as encodeSat
// rounds it, so the codes are those of Encode(x·scale). vals must not be nil.
func (q *tileQuant) columnTiles(b, r0, r1 int) uint32 {
	var (
		am    [colChunk]uint32
		scale [colChunk]float32
		k     [colChunk]float32
		tmp   [colChunk]float32
		buf   [colChunk]uint8
	)
	var band uint32
	for c0 := 0; c0 < q.cols; c0 += colChunk {
		w := min(colChunk, q.cols-c0)
		a := am[:w]
		clear(a)
		for r := r0; r < r1; r++ {
			row := q.src[r*q.cols+c0 : r*q.cols+c0+w]
			for j := amaxColsBulk(a, row); j < w; j++ {
				a[j] = max(a[j], math.Float32bits(row[j])&0x7FFFFFFF)
			}
		}
		var chunk uint32
		for j := range w {
			chunk = max(chunk, a[j])
			scale[j] = q.scaleOf(a[j])
			inv := 1 / scale[j]
			if q.inv != nil {
				q.inv[b*q.cols+c0+j] = inv
			}
			k[j] = inv * q.mul
		}
		band = max(band, chunk)
		for r := r0; r < r1; r++ {
			i0 := r*q.cols + c0
			src, vals, c := q.src[i0:i0+w], q.vals[i0:i0+w], buf[:w]
			if q.codes != nil {
				c = q.codes[i0 : i0+w]
			}
			done := 0
			if chunk <= 0x7F800000 { // no NaN to fix up after the assembly loop
				done = encodeVecBulk(q.p, c, vals, src, scale[:w], k[:w])
			}
			t := tmp[done:w]
			for j := range t {
				t[j] = src[done+j] * scale[done+j]
			}
			q.p.encodeSat(c[done:], nil, t, 1)
			for j := done; j < w; j++ {
				vals[j] = q.p.decode[c[j]] * k[j]
			}
		}
	}
	return band
}

// tileDecode is a kernels.TileDequant as the loops read it: dst = Decode(codes)·
// inv[tile]·mul, the very values that a tileQuant of the same tiling wrote into vals.
type tileDecode struct {
	tab        *[256]float32
	dst        []float32
	codes      []uint8
	inv        []float32
	rows, cols int
	tr, tc     int
	mul        float32
}

// DequantizeTiles: see kernels.Backend. It runs on the worker pool, one band of TR rows per
// task index.
func (be *Backend[F]) DequantizeTiles(t kernels.TileDequant) {
	d := tileDecode{tab: fp8Table(t.Format), dst: t.Dst.Host(), codes: t.Codes.Host(), inv: t.Inv.Host(),
		rows: t.Rows, cols: t.Cols, tr: t.TR, tc: t.TC, mul: t.Mul}
	parallelFor(tileCount(d.rows, d.tr), max(1, fp8Grain/(d.tr*d.cols+1)), d)
}

func (d *tileDecode) run(lo, hi int) {
	nt := tileCount(d.cols, d.tc)
	if d.tr == 1 && d.tc == fp8Tile && d.cols%fp8Tile == 0 { // the rows are whole tiles one after another
		i0, i1 := lo*d.cols, hi*d.cols
		lo += decodeTilesBulk(d.dst[i0:i1], d.codes[i0:i1], d.inv[lo*nt:hi*nt], d.mul, d.tab) / d.cols
	}
	for b := lo; b < hi; b++ {
		for r := b * d.tr; r < min((b+1)*d.tr, d.rows); r++ {
			t0 := 0
			if d.tc == fp8Tile { // the row's whole tiles in one call
				i0 := r * d.cols
				t0 = decodeTilesBulk(d.dst[i0:i0+d.cols], d.codes[i0:i0+d.cols], d.inv[b*nt:(b+1)*nt], d.mul, d.tab) / fp8Tile
			}
			for t := t0; t < nt; t++ {
				i0, i1 := r*d.cols+t*d.tc, r*d.cols+min((t+1)*d.tc, d.cols)
				decodeScaled(d.dst[i0:i1], d.codes[i0:i1], d.inv[b*nt+t]*d.mul, d.tab)
			}
		}
	}
}
