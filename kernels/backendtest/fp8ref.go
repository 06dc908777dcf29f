package backendtest

import (
	"math"
	"sort"

	"github.com/herdml/herd/kernels"
)

// The FP8 reference: the OCP FP8 formats from their bit fields (kernels/fp8.go), and the
// conversion by search for the nearest value, independent of any backend's bit tricks.

// fp8Bits returns format f's mantissa bits and exponent bias.
func fp8Bits(f kernels.FP8) (mbits, bias int) {
	if f == kernels.E5M2 {
		return 2, 15
	}
	return 3, 7
}

func fp8Name(f kernels.FP8) string {
	if f == kernels.E5M2 {
		return "E5M2"
	}
	return "E4M3"
}

// fp8Values holds every code's value, by format.
var fp8Values = func() (t [2][256]float64) {
	for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
		for c := range 256 {
			t[f][c] = fp8Decode(f, uint8(c))
		}
	}
	return t
}()

// fp8Value is the exact value of code c of f.
func fp8Value(f kernels.FP8, c uint8) float64 { return fp8Values[f][c] }

// fp8Decode is the value of code c from its bit fields: E4M3 has no infinities and
// S.1111.111 is NaN; E5M2's top exponent is Inf (mantissa 0) or NaN.
func fp8Decode(f kernels.FP8, c uint8) float64 {
	mbits, bias := fp8Bits(f)
	top := 1<<(7-mbits) - 1
	e, m := int(c>>mbits)&top, int(c)&(1<<mbits-1)
	var v float64
	switch {
	case f == kernels.E4M3 && e == top && m == 1<<mbits-1, f == kernels.E5M2 && e == top && m != 0:
		return math.NaN()
	case e == top && f == kernels.E5M2:
		v = math.Inf(1)
	case e == 0:
		v = math.Ldexp(float64(m), 1-bias-mbits)
	default:
		v = math.Ldexp(1+float64(m)/float64(int(1)<<mbits), e-bias)
	}
	if c&0x80 != 0 {
		v = -v
	}
	return v
}

// fp8MaxCode is the code of f's largest finite value: 448 (E4M3), 57344 (E5M2).
func fp8MaxCode(f kernels.FP8) uint8 {
	if f == kernels.E5M2 {
		return 0x7B
	}
	return 0x7E
}

// fp8Max is f's largest finite value.
func fp8Max(f kernels.FP8) float64 { return fp8Value(f, fp8MaxCode(f)) }

// fp8Encode is f's code of x with saturation: x rounded once to the nearest value of f,
// ties to the even code (the one whose mantissa ends in 0), beyond the largest finite
// value (±Inf included) the largest finite value, the sign kept (so -0 and a negative that
// rounds to zero give 0x80). NaN gives NaN's code 0x7F, though a backend may give any NaN
// code (isNaNCode).
func fp8Encode(f kernels.FP8, x float32) uint8 {
	v := float64(x)
	if math.IsNaN(v) {
		return 0x7F
	}
	var sign uint8
	if math.Signbit(v) {
		sign = 0x80
	}
	a, top := math.Abs(v), int(fp8MaxCode(f))
	// Codes 0..top are the non-negative finite values in increasing order: c is the last
	// whose value is <= a.
	c := sort.Search(top+1, func(i int) bool { return fp8Value(f, uint8(i)) > a }) - 1
	if c < top {
		// a and the two neighbours are exact in float64, and so are the differences.
		lo, hi := a-fp8Value(f, uint8(c)), fp8Value(f, uint8(c+1))-a
		if hi < lo || hi == lo && c%2 == 1 {
			c++
		}
	}
	return uint8(c) | sign
}

// isNaNCode says whether code c of f is a NaN.
func isNaNCode(f kernels.FP8, c uint8) bool { return math.IsNaN(fp8Value(f, c)) }

// amaxOf is max|x[i]|, NaN if any x[i] is NaN, 0 for none.
func amaxOf(x []float32) float32 {
	var m float32
	for _, v := range x {
		if v != v {
			return v
		}
		m = max(m, float32(math.Abs(float64(v))))
	}
	return m
}
