package fp8

import (
	"math"
	"runtime"
	"sync"
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
	tab := &formats[f].decode
	dst = dst[:len(src)]
	parallelMax(len(src), func(lo, hi int) uint32 {
		d, c := dst[lo:hi], src[lo:hi]
		for i := decodeBulk(d, c, scaleInv, tab); i < len(c); i++ {
			d[i] = tab[c[i]] * scaleInv
		}
		return 0
	})
}

// Amax returns max|src[i]|, NaN if any src[i] is NaN, 0 for an empty slice.
func Amax(src []float32) float32 {
	return math.Float32frombits(parallelMax(len(src), func(lo, hi int) uint32 {
		var m uint32
		for _, x := range src[lo:hi] {
			m = max(m, math.Float32bits(x)&0x7FFFFFFF)
		}
		return m
	}))
}

// quantize is Quantize that also, or instead, writes the decoded FP8 values (unscaled)
// into vals: the exact operands an FP8 GEMM multiplies. codes or vals may be nil; without
// codes, the codes of each chunk go through a small buffer that stays in L1.
func quantize(codes []uint8, vals, src []float32, scale float32, f Format) float32 {
	p := &formats[f]
	if codes != nil {
		codes = codes[:len(src)]
	}
	if vals != nil {
		vals = vals[:len(src)]
	}
	m := parallelMax(len(src), func(lo, hi int) uint32 {
		var buf [4096]uint8
		var m uint32
		for ; lo < hi; lo += len(buf) {
			end := min(lo+len(buf), hi)
			c := buf[:end-lo]
			if codes != nil {
				c = codes[lo:end]
			}
			var v []float32
			if vals != nil {
				v = vals[lo:end]
			}
			m = max(m, p.encodeSat(c, v, src[lo:end], scale))
		}
		return m
	})
	return math.Float32frombits(m)
}

// grain is the fewest elements worth a goroutine: some 10–30 µs of work.
const grain = 1 << 15

// parallelMax runs body over [0, n) split into contiguous chunks, one goroutine per chunk,
// up to GOMAXPROCS chunks of at least grain elements, and returns the maximum of the
// bodies' results. Each element is handled by one body and max does not depend on the
// order, so the result is the same for any number of threads.
func parallelMax(n int, body func(lo, hi int) uint32) uint32 {
	chunks := min(runtime.GOMAXPROCS(0), n/grain)
	if chunks <= 1 {
		return body(0, n)
	}
	res := make([]uint32, chunks)
	per := (n + chunks - 1) / chunks
	var wg sync.WaitGroup
	for c := range chunks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[c] = body(c*per, min(c*per+per, n))
		}()
	}
	wg.Wait()
	var m uint32
	for _, r := range res {
		m = max(m, r)
	}
	return m
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
