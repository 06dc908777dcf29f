package kernels

import (
	"fmt"
	"math"
)

// FP8 is an 8-bit floating-point encoding (OCP FP8), the format argument of the Backend's
// FP8 operations. Its methods are the scalar reference conversion, with NVIDIA's rules,
// that every backend's FP8 loops must match bit for bit.
//
//	E4M3: 1 sign, 4 exponent (bias 7), 3 mantissa bits. Max ±448, min subnormal 2^-9.
//	      No infinities; S.1111.111 is NaN, so the top exponent still holds 1.0–1.75.
//	E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits. Max ±57344, min subnormal 2^-16.
//	      IEEE-like: exponent 11111 is Inf (mantissa 0) or NaN.
type FP8 uint8

const (
	E4M3 FP8 = iota // forward operands: activations and weights
	E5M2            // backward operands: gradients, which need range more than precision
)

// Overflow says what a conversion does with a value beyond the largest finite one.
type Overflow uint8

const (
	// SatFinite clamps to ±max, as NVIDIA's __NV_SATFINITE and Transformer Engine do; ±Inf
	// become ±max too. Scaled training always uses it: a stale delayed scale must not turn
	// an outlier into NaN.
	SatFinite Overflow = iota
	// NoSat gives NaN (E4M3, which has no Inf) or ±Inf (E5M2), as __NV_NOSAT does.
	NoSat
)

// fp8Format holds the constants of the scalar conversion.
type fp8Format struct {
	name      string
	mbits     uint32  // mantissa bits
	max       float32 // largest finite value
	maxCode   uint32  // code of +max
	overCode  uint32  // NoSat overflow code, before the sign
	minNormal uint32  // float32 bits of 2^emin
	magic     float32 // 2^(emin-mbits+23): adding it rounds |x| < 2^emin to the subnormal grid
	rebias    uint32  // (127 - bias) << mbits: float32 exponent field to FP8 exponent field
	decode    [256]float32
}

var fp8Formats = [2]fp8Format{
	E4M3: newFP8Format("E4M3", 3, 7, 0x7E, 0x7F),
	E5M2: newFP8Format("E5M2", 2, 15, 0x7B, 0x7C),
}

func newFP8Format(name string, mbits uint32, bias int, maxCode, overCode uint32) fp8Format {
	emin := 1 - bias
	f := fp8Format{
		name: name, mbits: mbits, maxCode: maxCode, overCode: overCode,
		minNormal: math.Float32bits(float32(math.Ldexp(1, emin))),
		magic:     float32(math.Ldexp(1, emin-int(mbits)+23)),
		rebias:    uint32(127-bias) << mbits,
	}
	ebits := 7 - mbits
	for c := range 256 {
		e := (c >> mbits) & (1<<ebits - 1)
		m := float64(c & (1<<mbits - 1))
		var v float64
		switch {
		case uint32(c&0x7F) > maxCode && (name == "E4M3" || m != 0):
			v = math.NaN()
		case uint32(c&0x7F) > maxCode:
			v = math.Inf(1)
		case e == 0:
			v = math.Ldexp(m, emin-int(mbits))
		default:
			v = math.Ldexp(1+m/float64(int(1)<<mbits), e-bias)
		}
		if c&0x80 != 0 {
			v = -v
		}
		f.decode[c] = float32(v)
	}
	f.max = f.decode[maxCode]
	return f
}

func (f FP8) String() string {
	if int(f) < len(fp8Formats) {
		return fp8Formats[f].name
	}
	return fmt.Sprintf("FP8(%d)", uint8(f))
}

// Max is the largest finite value: 448 for E4M3, 57344 for E5M2.
func (f FP8) Max() float32 { return fp8Formats[f].max }

// Decode returns the exact value of code c (NaN for NaN codes, ±Inf for E5M2's Inf codes).
func (f FP8) Decode(c uint8) float32 { return fp8Formats[f].decode[c] }

// Encode converts x with one rounding to nearest, ties to even, from its exact value.
// Values below half the smallest subnormal become ±0 (the sign is kept); NaN becomes the
// canonical 0x7F; values beyond the largest finite one and ±Inf follow o.
func (f FP8) Encode(x float32, o Overflow) uint8 {
	p := &fp8Formats[f]
	b := math.Float32bits(x)
	if b&0x7FFFFFFF > 0x7F800000 {
		return 0x7F
	}
	code := p.magnitude(b & 0x7FFFFFFF)
	if code > p.maxCode {
		if o == SatFinite {
			code = p.maxCode
		} else {
			code = p.overCode
		}
	}
	return uint8(code) | uint8(b>>24)&0x80
}

// magnitude rounds the non-NaN float32 magnitude with bits a to nearest even on the FP8
// grid, without an upper limit: the result is the FP8 code of the rounded value, and any
// result above maxCode means overflow. (An FP8 code read as an integer grows with the value
// it encodes, and a carry out of the mantissa correctly bumps the exponent.)
func (p *fp8Format) magnitude(a uint32) uint32 {
	if a < p.minNormal {
		// Subnormal range: the quanta are 2^(emin-mbits). magic has exactly that ulp, so
		// the float32 addition rounds |x| once, to nearest even, onto the grid; the
		// bits above magic's count the quanta, which is the code (8 = the smallest normal).
		return math.Float32bits(float32(math.Float32frombits(a)+p.magic)) - math.Float32bits(p.magic)
	}
	// Normal range: keep mbits of the float32 mantissa, rounding the 23-mbits dropped bits
	// to nearest even (add just under half, plus the kept LSB), then rebias the exponent.
	s := 23 - p.mbits
	return (a+(1<<(s-1)-1)+(a>>s)&1)>>s - p.rebias
}

// The limits of FP8Scale: a scale and its inverse both stay finite, normal float32
// numbers, whatever the amax (a subnormal amax would give an infinite fp8_max/amax, a huge
// margin a zero).
const (
	FP8MinScale = 0x1p-126
	FP8MaxScale = 0x1p126
)

// FP8Scale is the FP8 recipes' scaling rule: (f.Max() / amax) / 2^margin, rounded down to
// a power of two when pow2 is set, clamped to [FP8MinScale, FP8MaxScale]; prev is kept
// when amax is zero or not finite, since such an amax says nothing about the tensor's
// range. Every backend's QuantizeTiles scales its tiles by it, and kernels/fp8 its
// tensors, so that a tile's scale is the same wherever it is computed.
func FP8Scale(amax, prev float32, f FP8, margin int, pow2 bool) float32 {
	if !(amax > 0 && amax <= math.MaxFloat32) {
		return prev
	}
	s := f.Max() / amax // float32 division, as Transformer Engine computes it
	if margin != 0 {    // Ldexp is slow, and the blockwise recipe computes a scale per tile
		s = float32(math.Ldexp(float64(s), -margin))
	}
	s = min(max(s, FP8MinScale), FP8MaxScale)
	if pow2 {
		s = math.Float32frombits(math.Float32bits(s) &^ (1<<23 - 1)) // s is normal: drop the mantissa
	}
	return s
}
