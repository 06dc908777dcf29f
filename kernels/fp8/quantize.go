package fp8

import "math"

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
	for i, c := range src {
		dst[i] = tab[c] * scaleInv
	}
}

// Amax returns max|src[i]|, NaN if any src[i] is NaN, 0 for an empty slice.
func Amax(src []float32) float32 {
	var m uint32
	for _, x := range src {
		m = max(m, math.Float32bits(x)&0x7FFFFFFF)
	}
	return math.Float32frombits(m)
}

// quantize is Quantize that also, or instead, writes the decoded FP8 values (unscaled)
// into vals: the exact operands an FP8 GEMM multiplies. codes or vals may be nil; without
// codes, the codes of each chunk go through a small buffer that stays in L1.
func quantize(codes []uint8, vals, src []float32, scale float32, f Format) float32 {
	p := &formats[f]
	var buf [4096]uint8
	var m uint32
	for lo := 0; lo < len(src); lo += len(buf) {
		hi := min(lo+len(buf), len(src))
		c := buf[:hi-lo]
		if codes != nil {
			c = codes[lo:hi]
		}
		m = max(m, p.encodeSat(c, src[lo:hi], scale))
		if vals != nil {
			v := vals[lo:hi]
			for i, b := range c {
				v[i] = p.decode[b]
			}
		}
	}
	return math.Float32frombits(m)
}

// encodeSat writes dst[i] = Encode(src[i]·scale, SatFinite) and returns the largest
// |src[i]| as bits. It is Encode with its constants hoisted and its rare cases moved out:
// the subnormal branch is almost never taken once a tensor is scaled to the FP8 range, and
// NaN is fixed up afterwards, since the product src[i]·scale (scale finite and non-zero)
// is NaN only where src[i] is.
//
// The maximum is taken over the magnitudes' bit patterns: for non-negative floats the
// integer order is the numeric order, and every NaN pattern is above +Inf, so the result
// is NaN exactly when a NaN was seen.
func (p *format) encodeSat(dst []uint8, src []float32, scale float32) uint32 {
	s := (23 - p.mbits) & 31 // the mask tells the compiler the shift is below 32
	// Normal range, as in magnitude: (a + half + lsb) >> s - rebias, with the rebias folded
	// into the constant (uint32 wrap-around is exact here: a >= minNormal > rebias << s).
	k := uint32(1)<<s>>1 - 1 - p.rebias<<s
	minNormal, maxCode := p.minNormal, p.maxCode
	var m uint32
	dst = dst[:len(src)]
	for i, x := range src {
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
	}
	if m > 0x7F800000 {
		for i, x := range src {
			if x != x {
				dst[i] = 0x7F
			}
		}
	}
	return m
}
