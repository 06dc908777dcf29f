package fp8

import (
	"math"
	"sync/atomic"

	"github.com/herdml/herd/kernels/cpu"
)

// TileSize is the blockwise recipe's tile edge (DeepSeek-V3 §3.3.1, Transformer Engine's
// Float8BlockScaling): activations and gradients are scaled per 1×128 tile along a GEMM's
// reduction dimension, weights per 128×128 block. One outlier then coarsens the
// quantization of 128 values (or 16384 weights) instead of the whole tensor.
const TileSize = 128

// tiles is the number of tiles of edge t that cover n.
func tiles(n, t int) int { return (n + t - 1) / t }

// tileQuant quantizes a row-major [rows, cols] tensor tile by tile: every tr×tc tile
// (1×T, T×1 or T×T) gets the just-in-time scale of its own amax, by the recipes' rule
// (computeScale, with 1 kept for an all-zero or non-finite tile). It writes the codes
// and/or the decoded values times mul/scale (the GEMM operand, the scale-back folded in),
// and the tiles' inverse scales when inv is not nil, row-major over the tiles.
type tileQuant struct {
	p          *format
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

// quantizeTiles runs q over q.rows on the CPU kernels' pool, one band of q.tr rows per
// task index, and returns the amax of the whole tensor (NaN if any value is NaN).
func quantizeTiles(q tileQuant) float32 {
	m := cpu.Take[atomic.Uint32]()
	defer cpu.Release(m)
	m.Store(0)
	q.amax = m
	cpu.ParallelFor(tiles(q.rows, q.tr), max(1, grain/(q.tr*q.cols+1)), q)
	return math.Float32frombits(m.Load())
}

// colChunk is how many columns of a band a T×1 tiling scales at a time (stack buffers).
const colChunk = 256

func (q tileQuant) Run(lo, hi int) {
	var m uint32
	if q.rowLoop() && q.cols%TileSize == 0 { // the rows are whole tiles one after another
		n, a := q.wholeTiles(lo*q.cols, hi*q.cols, lo*q.cols/TileSize)
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
	raise(q.amax, m)
}

// scaleOf is a tile's scale from its amax bits; 1 for an all-zero or non-finite tile.
func (q *tileQuant) scaleOf(a uint32, f Format) float32 {
	return computeScale(math.Float32frombits(a), 1, f, q.margin, q.pow2)
}

// rowLoop says whether q's 1×TileSize tiles may go through encodeTilesBulk, whose loop
// does a tile's amax, scale and codes in one pass and many tiles per call (TileCodec's
// tiles: the per-tile calls cost as much as the work on 128 values): it scales by the
// rule with margin 0 and no power of two, and writes codes and inverse scales but no
// values (with values, as the blockwise recipe's row tiles, the loop was no faster).
func (q *tileQuant) rowLoop() bool {
	return q.tr == 1 && q.tc == TileSize && q.codes != nil && q.vals == nil && q.inv != nil && q.margin == 0 && !q.pow2
}

// wholeTiles quantizes src[i0:i1], whole 1×TileSize tiles whose inverse scales go to
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
	var buf [TileSize]uint8
	f := q.format()
	nt := tiles(q.cols, q.tc)
	var band uint32
	t0 := 0
	if q.rowLoop() { // r1 = r0+1: the row's whole tiles in one call, then its narrower last one
		i0 := r0 * q.cols
		n, a := q.wholeTiles(i0, i0+q.cols/TileSize*TileSize, b*nt)
		t0, band = n/TileSize, a
	}
	for t := t0; t < nt; t++ {
		c0, c1 := t*q.tc, min((t+1)*q.tc, q.cols)
		var a uint32
		for r := r0; r < r1; r++ {
			a = max(a, amaxBits(q.src[r*q.cols+c0:r*q.cols+c1]))
		}
		band = max(band, a)
		scale := q.scaleOf(a, f)
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
	f := q.format()
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
			scale[j] = q.scaleOf(a[j], f)
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

// format is the Format whose constants q.p holds.
func (q *tileQuant) format() Format {
	if q.p == &formats[E5M2] {
		return E5M2
	}
	return E4M3
}

// amaxBits is the largest |x| of src as float32 bits (NaN patterns above all).
func amaxBits(src []float32) uint32 {
	done, m := amaxBulk(src)
	for _, x := range src[done:] {
		m = max(m, math.Float32bits(x)&0x7FFFFFFF)
	}
	return m
}

// decodeScaled writes dst[i] = tab[src[i]]·k.
func decodeScaled(dst []float32, src []uint8, k float32, tab *[256]float32) {
	for i := decodeBulk(dst, src, k, tab); i < len(src); i++ {
		dst[i] = tab[src[i]] * k
	}
}

// tileDecode is the inverse of a tileQuant with 1×T or T×T tiles that kept codes and inv:
// dst = Decode(codes)·inv[tile]·mul, the very values that tileQuant wrote into vals.
type tileDecode struct {
	tab        *[256]float32
	dst        []float32
	codes      []uint8
	inv        []float32
	rows, cols int
	tr, tc     int
	mul        float32
}

// decodeTiles runs d on the CPU kernels' pool, one band of d.tr rows per task index.
func decodeTiles(d tileDecode) {
	cpu.ParallelFor(tiles(d.rows, d.tr), max(1, grain/(d.tr*d.cols+1)), d)
}

func (d tileDecode) Run(lo, hi int) {
	nt := tiles(d.cols, d.tc)
	if d.tr == 1 && d.tc == TileSize && d.cols%TileSize == 0 { // the rows are whole tiles one after another
		i0, i1 := lo*d.cols, hi*d.cols
		lo += decodeTilesBulk(d.dst[i0:i1], d.codes[i0:i1], d.inv[lo*nt:hi*nt], d.mul, d.tab) / d.cols
	}
	for b := lo; b < hi; b++ {
		for r := b * d.tr; r < min((b+1)*d.tr, d.rows); r++ {
			t0 := 0
			if d.tc == TileSize { // the row's whole tiles in one call
				i0 := r * d.cols
				t0 = decodeTilesBulk(d.dst[i0:i0+d.cols], d.codes[i0:i0+d.cols], d.inv[b*nt:(b+1)*nt], d.mul, d.tab) / TileSize
			}
			for t := t0; t < nt; t++ {
				i0, i1 := r*d.cols+t*d.tc, r*d.cols+min((t+1)*d.tc, d.cols)
				decodeScaled(d.dst[i0:i1], d.codes[i0:i1], d.inv[b*nt+t]*d.mul, d.tab)
			}
		}
	}
}

func growF(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// forwardTiles writes the forward GEMM's operands with the blockwise recipe: x in 1×T
// tiles along in (the reduction dimension), decoded into xv and kept as codes with their
// tiles' scales; w in T×T blocks, quantized once per step, decoded into wv with s folded in.
func (l *Linear) forwardTiles(xv, wv, x, w []float32, s float32) {
	n, in, out := l.n, l.k, l.o
	e4 := &formats[E4M3]
	l.sc.xv = nil // slot 0 gets x's values times their tile scales
	if l.shared == nil {
		l.x.codes = grow(l.x.codes, n*in)
		l.x.tileInv = growF(l.x.tileInv, n*tiles(in, TileSize))
		l.x.scaleInv = 1
		l.in.quantizeTiles(tileQuant{codes: l.x.codes, vals: xv, src: x, inv: l.x.tileInv,
			rows: n, cols: in, tr: 1, tc: TileSize, mul: 1})
		l.xSrc = &x[0]
	} else {
		l.checkShared(x)
		sx := &l.shared.x
		decodeTiles(tileDecode{tab: &e4.decode, dst: xv, codes: sx.codes, inv: sx.tileInv,
			rows: n, cols: in, tr: 1, tc: TileSize, mul: 1})
	}
	if l.weightStale(w) {
		l.wq.codes = grow(l.wq.codes, out*in)
		l.wq.tileInv = growF(l.wq.tileInv, tiles(out, TileSize)*tiles(in, TileSize))
		l.wq.scaleInv = 1
		l.w.quantizeTiles(tileQuant{codes: l.wq.codes, src: w, inv: l.wq.tileInv,
			rows: out, cols: in, tr: TileSize, tc: TileSize, mul: 1})
		l.wSrc, l.wGen = &w[0], l.sc.gen
	}
	l.decodeWeight(wv, s)
}

// decodeWeight writes the weight's blockwise FP8 copy, decoded and times s, into wv.
func (l *Linear) decodeWeight(wv []float32, s float32) {
	decodeTiles(tileDecode{tab: &formats[E4M3].decode, dst: wv, codes: l.wq.codes, inv: l.wq.tileInv,
		rows: l.o, cols: l.k, tr: TileSize, tc: TileSize, mul: s})
}

// backwardTiles is Backward with the blockwise recipe. Each backward GEMM quantizes its
// operands along its own reduction dimension, as DeepSeek-V3 does: dy in 1×T tiles along
// out for dx = s·dy·w (the weight's T×T blocks serve both GEMMs), and dy again in T×1
// tiles along n for dw = s·dyᵀ·x, where x, kept in 1×T tiles, is decoded and quantized
// again in T×1 tiles (DeepSeek-V3 §3.5.2: dequantize, transpose, re-quantize). With
// Config.GradFP32 dy stays float32 and x is only decoded.
func (l *Linear) backwardTiles(dx, dw, dy []float32, s float32, accumulate bool) {
	n, in, out := l.n, l.k, l.o
	be, g32 := l.sc.be, l.sc.cfg.GradFP32
	if g32 {
		l.grad.observe(dy)
	}
	if dx != nil {
		dyv := dy
		if !g32 {
			dyv = l.sc.workspace(0, n*out)
			l.grad.quantizeTiles(tileQuant{vals: dyv, src: dy, rows: n, cols: out, tr: 1, tc: TileSize, mul: 1})
		}
		wv := l.sc.workspace(1, out*in)
		l.decodeWeight(wv, s)
		be.MatMul(dx[:n*in], dyv, wv, n, out, in, false, false, accumulate)
	}
	if dw != nil {
		x := l.input()
		xv := l.sc.workspace(1, n*in)
		dyv, xs := dy, s
		if !g32 {
			dyv, xs = l.sc.workspace(0, n*out), 1
			l.grad.quantizeTiles(tileQuant{vals: dyv, src: dy, rows: n, cols: out, tr: TileSize, tc: 1, mul: s})
		}
		decodeTiles(tileDecode{tab: &formats[E4M3].decode, dst: xv, codes: x.codes, inv: x.tileInv,
			rows: n, cols: in, tr: 1, tc: TileSize, mul: xs})
		if !g32 {
			quantizeTiles(tileQuant{p: &formats[E4M3], vals: xv, src: xv, rows: n, cols: in, tr: TileSize, tc: 1,
				mul: 1, margin: l.sc.cfg.Margin, pow2: l.sc.cfg.Pow2})
		}
		be.MatMul(dw[:out*in], dyv, xv, out, n, in, true, false, true)
	}
}
