package fp8

import (
	"math"
	"sync/atomic"

	"github.com/herdml/herd/kernels/cpu"
)

// Quantize writes dst[i] = Encode(src[i]·scale, SatFinite) and returns amax = max|src[i]|,
// read in the same pass (NaN if any src[i] is NaN, so that a broken tensor never passes for
// a small one). The product src[i]·scale is rounded to float32 first, as on the GPU.
// len(dst) must be len(src).
func Quantize(dst []uint8, src []float32, scale float32, f Format) (amax float32) {
	return quantize(dst, nil, src, scale, f)
}

// Dequantize writes dst[i] = Decode(src[i])·scaleInv; len(dst) must be len(src).
// scaleInv is 1/scale of the Quantize that made src.
func Dequantize(dst []float32, src []uint8, scaleInv float32, f Format) {
	cpu.ParallelFor(len(src), grain, dequantizeTask{dst[:len(src)], src, scaleInv, &formats[f].decode})
}

type dequantizeTask struct {
	dst      []float32
	src      []uint8
	scaleInv float32
	tab      *[256]float32
}

func (t dequantizeTask) Run(lo, hi int) { decode(t.dst[lo:hi], t.src[lo:hi], t.scaleInv, t.tab) }

// decode is Dequantize on the calling goroutine, by the table tab of the codes' format.
func decode(dst []float32, src []uint8, scaleInv float32, tab *[256]float32) {
	for i := decodeBulk(dst, src, scaleInv, tab); i < len(src); i++ {
		dst[i] = tab[src[i]] * scaleInv
	}
}

// decoder is a kernels.Decoder of codes by the table tab times scaleInv, Dequantize's
// values: a GEMM operand kept as codes, decoded a panel at a time as the GEMM packs it.
type decoder struct {
	tab      *[256]float32
	scaleInv float32
}

// Decode decodes a GEMM panel (rows of up to 32 codes) in one assembly call where the
// AVX-512 loop runs, its constants loaded once rather than per 32 codes: decodeRowsBulk
// does each row's largest multiple of 16 columns and the per-row loop the rest (all of
// each row with AVX2 or Go). The same bits either way.
func (d *decoder) Decode(dst []float32, ldd int, src []uint8, lds, rows, cols int) {
	done := decodeRowsBulk(dst, ldd, src, lds, rows, cols, d.scaleInv, d.tab)
	if done == cols {
		return
	}
	for r := range rows {
		decode(dst[r*ldd+done:r*ldd+cols], src[r*lds+done:r*lds+cols], d.scaleInv, d.tab)
	}
}

// Amax returns max|src[i]|, NaN if any src[i] is NaN, 0 for an empty slice.
func Amax(src []float32) float32 {
	m := cpu.Take[atomic.Uint32]()
	defer cpu.Release(m)
	m.Store(0)
	cpu.ParallelFor(len(src), grain, amaxTask{src, m})
	return math.Float32frombits(m.Load())
}

type amaxTask struct {
	src  []float32
	amax *atomic.Uint32
}

func (t amaxTask) Run(lo, hi int) { raise(t.amax, amaxBits(t.src[lo:hi])) }

// quantize is Quantize that also, or instead, writes the decoded FP8 values (unscaled)
// into vals: the exact operands an FP8 GEMM multiplies. codes or vals may be nil; without
// codes, the codes of each chunk go through a small buffer that stays in L1.
func quantize(codes []uint8, vals, src []float32, scale float32, f Format) float32 {
	if codes != nil {
		codes = codes[:len(src)]
	}
	if vals != nil {
		vals = vals[:len(src)]
	}
	m := cpu.Take[atomic.Uint32]()
	defer cpu.Release(m)
	m.Store(0)
	cpu.ParallelFor(len(src), grain, quantizeTask{&formats[f], codes, vals, src, scale, m})
	return math.Float32frombits(m.Load())
}

type quantizeTask struct {
	p         *format
	codes     []uint8
	vals, src []float32
	scale     float32
	amax      *atomic.Uint32
}

func (t quantizeTask) Run(lo, hi int) {
	var buf [4096]uint8
	var m uint32
	for ; lo < hi; lo += len(buf) {
		end := min(lo+len(buf), hi)
		c := buf[:end-lo]
		if t.codes != nil {
			c = t.codes[lo:end]
		}
		var v []float32
		if t.vals != nil {
			v = t.vals[lo:end]
		}
		m = max(m, t.p.encodeSat(c, v, t.src[lo:end], t.scale))
	}
	raise(t.amax, m)
}

// grain is the fewest elements worth a thread: some 10–30 µs of work.
const grain = 1 << 15

// raise sets *a to max(*a, m). The loops above run on the CPU kernels' worker pool
// (no goroutine or closure per call, so a training step allocates nothing), each chunk
// raising the shared maximum once: max does not depend on the order, so the result is
// the same for any number of threads. Magnitudes are compared as bits, NaN above all.
func raise(a *atomic.Uint32, m uint32) {
	for old := a.Load(); m > old && !a.CompareAndSwap(old, m); old = a.Load() {
	}
}

// encodeSat writes dst[i] = Encode(src[i]·scale, SatFinite), and vals[i] = Decode(dst[i])
// unless vals is nil, and returns the largest |src[i]| as bits. It is Encode with its
// constants hoisted and its rare cases moved out: the subnormal branch is almost never
// taken once a tensor is scaled to the FP8 range, and NaN is fixed up afterwards, since
// the product src[i]·scale (scale finite and non-zero) is NaN only where src[i] is.
//
// The maximum is taken over the magnitudes' bit patterns: for non-negative floats the
// integer order is the numeric order, and every NaN pattern is above +Inf, so the result
// is NaN exactly when a NaN was seen.
func (p *format) encodeSat(dst []uint8, vals, src []float32, scale float32) uint32 {
	dst = dst[:len(src)]
	done, m := encodeSatBulk(p, dst, vals, src, scale)
	c := &p.enc
	s := c.shift & 31 // the mask tells the compiler the shift is below 32
	k, minNormal, maxCode := c.k, c.minNormal, c.maxCode
	for i := done; i < len(src); i++ {
		x := src[i]
		m = max(m, math.Float32bits(x)&0x7FFFFFFF)
		b := math.Float32bits(x * scale)
		a := b & 0x7FFFFFFF
		var code uint32
		if a >= minNormal {
			code = min((a+k+(a>>s)&1)>>s, maxCode)
		} else {
			code = p.magnitude(a)
		}
		dst[i] = uint8(code | b>>24&0x80)
		if vals != nil {
			vals[i] = p.decode[dst[i]]
		}
	}
	if m > 0x7F800000 {
		for i, x := range src {
			if x != x {
				dst[i] = 0x7F
				if vals != nil {
					vals[i] = p.decode[0x7F]
				}
			}
		}
	}
	return m
}
