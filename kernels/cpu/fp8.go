package cpu

// The Backend's per-tensor FP8 ops: Amax, Quantize and Dequantize, and the decoding of
// MatMulCodes' operand. Their loops give the bits of kernels.FP8's scalar Encode and Decode,
// with assembly fast paths (fp8_amd64.go) and Go loops for what those leave.

import (
	"math"
	"sync/atomic"

	"github.com/herdml/herd/kernels"
)

// fp8Format holds the constants of an FP8 format's loops.
type fp8Format struct {
	f       kernels.FP8
	mbits   uint32  // mantissa bits
	rebias  uint32  // (127 - bias) << mbits: float32 exponent field to FP8 exponent field
	maxCode uint32  // code of +max
	max     float32 // largest finite value
	enc     encConsts
	decode  [256]float32 // f.Decode of every code
}

// encConsts are encodeSat's loop constants, laid out for the assembly loops.
type encConsts struct {
	k         uint32 // 2^(shift-1) - 1 - rebias << shift: round-half-even bias, rebias folded in
	shift     uint32 // 23 - mbits: float32 mantissa bits dropped
	minNormal uint32 // float32 bits of 2^emin
	maxCode   uint32
	magic     uint32 // bits of 2^(emin-mbits+23): adding it rounds |x| < 2^emin to the subnormal grid
	valBias   uint32 // rebias << shift: a normal code shifted back, plus this, is its value
}

var fp8Formats = [2]fp8Format{
	kernels.E4M3: newFP8Format(kernels.E4M3, 3, 7),
	kernels.E5M2: newFP8Format(kernels.E5M2, 2, 15),
}

// newFP8Format derives the loops' constants of format f, which has mbits mantissa bits
// and exponent bias bias, and takes its table from f.Decode.
func newFP8Format(f kernels.FP8, mbits uint32, bias int) fp8Format {
	emin := 1 - bias
	p := fp8Format{f: f, mbits: mbits, rebias: uint32(127-bias) << mbits,
		maxCode: uint32(f.Encode(f.Max(), kernels.SatFinite)), max: f.Max()}
	for c := range 256 {
		p.decode[c] = f.Decode(uint8(c))
	}
	s := 23 - mbits
	p.enc = encConsts{k: 1<<(s-1) - 1 - p.rebias<<s, shift: s,
		minNormal: math.Float32bits(float32(math.Ldexp(1, emin))), maxCode: p.maxCode,
		magic: math.Float32bits(float32(math.Ldexp(1, emin-int(mbits)+23))), valBias: p.rebias << s}
	return p
}

// fp8Table is f's decode table: tab[c] = f.Decode(c).
func fp8Table(f kernels.FP8) *[256]float32 { return &fp8Formats[f].decode }

// Amax: see kernels.Backend.
func (be *Backend[F]) Amax(x kernels.Buf[float32]) float32 {
	src := x.Host()
	m := take[atomic.Uint32]()
	defer release(m)
	m.Store(0)
	parallelFor(len(src), fp8Grain, amaxTask{src, m})
	return math.Float32frombits(m.Load())
}

type amaxTask struct {
	src  []float32
	amax *atomic.Uint32
}

func (t *amaxTask) run(lo, hi int) { raiseAmax(t.amax, amaxBits(t.src[lo:hi])) }

// Quantize: see kernels.Backend. Without codes, the codes of each chunk go through a
// small buffer that stays in L1.
func (be *Backend[F]) Quantize(codes kernels.Buf[uint8], vals, src kernels.Buf[float32], scale float32, f kernels.FP8) float32 {
	s := src.Host()
	c, v := orNil(codes.Host()), orNil(vals.Host())
	if c != nil {
		c = c[:len(s)]
	}
	if v != nil {
		v = v[:len(s)]
	}
	m := take[atomic.Uint32]()
	defer release(m)
	m.Store(0)
	parallelFor(len(s), fp8Grain, quantizeTask{&fp8Formats[f], c, v, s, scale, m})
	return math.Float32frombits(m.Load())
}

type quantizeTask struct {
	p         *fp8Format
	codes     []uint8
	vals, src []float32
	scale     float32
	amax      *atomic.Uint32
}

func (t *quantizeTask) run(lo, hi int) {
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
	raiseAmax(t.amax, m)
}

// Dequantize: see kernels.Backend.
func (be *Backend[F]) Dequantize(dst kernels.Buf[float32], src kernels.Buf[uint8], scaleInv float32, f kernels.FP8) {
	s := src.Host()
	parallelFor(len(s), fp8Grain, dequantizeTask{dst.Host()[:len(s)], s, scaleInv, fp8Table(f)})
}

type dequantizeTask struct {
	dst      []float32
	src      []uint8
	scaleInv float32
	tab      *[256]float32
}

func (t *dequantizeTask) run(lo, hi int) {
	decodeScaled(t.dst[lo:hi], t.src[lo:hi], t.scaleInv, t.tab)
}

// decodeScaled writes dst[i] = tab[src[i]]·k on the calling goroutine, tab being the
// table of the codes' format.
func decodeScaled(dst []float32, src []uint8, k float32, tab *[256]float32) {
	for i := decodeBulk(dst, src, k, tab); i < len(src); i++ {
		dst[i] = tab[src[i]] * k
	}
}

// decodeRows writes dst[r*ldd+j] = tab[src[r*lds+j]]·scaleInv for rows rows of cols codes:
// MatMulCodes' panels (rows of up to 32 codes), decoded as the GEMM packs them. Where the
// AVX-512 loop runs, one assembly call does each row's largest multiple of 16 columns, its
// constants loaded once rather than per 32 codes, and the per-row loop the rest (all of
// each row with AVX2 or Go). The same bits either way.
func decodeRows(dst []float32, ldd int, src []uint8, lds, rows, cols int, scaleInv float32, tab *[256]float32) {
	done := decodeRowsBulk(dst, ldd, src, lds, rows, cols, scaleInv, tab)
	if done == cols {
		return
	}
	for r := range rows {
		decodeScaled(dst[r*ldd+done:r*ldd+cols], src[r*lds+done:r*lds+cols], scaleInv, tab)
	}
}

// orNil is s, or nil when s is empty: an empty Buf stands for an output not written.
func orNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// fp8Grain is the fewest elements worth a thread: below it, waking a helper costs more
// than the work it takes (docs/kernels.md, "Waking the workers").
const fp8Grain = 1 << 15

// raiseAmax sets *a to max(*a, m). The FP8 loops run on the worker pool, each chunk
// raising the shared maximum once: max does not depend on the order, so the result is
// the same for any number of threads. Magnitudes are compared as bits, NaN above all.
func raiseAmax(a *atomic.Uint32, m uint32) {
	for old := a.Load(); m > old && !a.CompareAndSwap(old, m); old = a.Load() {
	}
}

// amaxBits is the largest |x| of src as float32 bits (NaN patterns above all).
func amaxBits(src []float32) uint32 {
	done, m := amaxBulk(src)
	for _, x := range src[done:] {
		m = max(m, math.Float32bits(x)&0x7FFFFFFF)
	}
	return m
}

// encodeSat writes dst[i] = Encode(src[i]·scale, SatFinite), and vals[i] = Decode(dst[i])
// unless vals is nil, and returns the largest |src[i]| as bits. It is Encode with its
// constants hoisted and its rare cases moved out: the subnormal branch (Encode itself) is
// almost never taken once a tensor is scaled to the FP8 range, and NaN is fixed up
// afterwards, since the product src[i]·scale (scale finite and non-zero) is NaN only where
// src[i] is.
//
// The maximum is taken over the magnitudes' bit patterns: for non-negative floats the
// integer order is the numeric order, and every NaN pattern is above +Inf, so the result
// is NaN exactly when a NaN was seen.
func (p *fp8Format) encodeSat(dst []uint8, vals, src []float32, scale float32) uint32 {
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
		} else { // a subnormal code: below maxCode, so Encode's overflow rule does not apply
			code = uint32(p.f.Encode(math.Float32frombits(a), kernels.SatFinite))
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
