package cpu

import (
	"math"
	"math/big"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/herdml/herd/kernels"
)

// The vectors: value -> (kernels.E4M3 sat, kernels.E5M2 sat).
func TestEncodeVectors(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	cases := []struct {
		x          float32
		e4m3, e5m2 uint8
	}{
		{1.0, 0x38, 0x3C},
		{0.1, 0x1D, 0x2E},
		{-3.14159265, 0xC5, 0xC2},
		{1.0625, 0x38, 0x3C}, // tie
		{1.1875, 0x3A, 0x3D}, // tie
		{250, 0x78, 0x5C},
		{464, 0x7E, 0x5F},
		{61440, 0x7E, 0x7B},
		{inf, 0x7E, 0x7B},
		{nan, 0x7F, 0x7F},
		{0x1p-9, 0x01, 0x18},
		{0x1p-10, 0x00, 0x14},
		{0x1p-16, 0x00, 0x01},
	}
	for _, c := range cases {
		if got := kernels.E4M3.Encode(c.x, kernels.SatFinite); got != c.e4m3 {
			t.Errorf("E4M3(%g) = %#02x, want %#02x", c.x, got, c.e4m3)
		}
		if got := kernels.E5M2.Encode(c.x, kernels.SatFinite); got != c.e5m2 {
			t.Errorf("E5M2(%g) = %#02x, want %#02x", c.x, got, c.e5m2)
		}
	}
	nosat := []struct {
		f    kernels.FP8
		x    float32
		want uint8
	}{
		{kernels.E4M3, 464.0001, 0x7F},
		{kernels.E4M3, 464, 0x7E}, // the tie rounds to the even 448, not beyond
		{kernels.E4M3, -inf, 0xFF},
		{kernels.E5M2, 61440, 0x7C},
		{kernels.E5M2, -inf, 0xFC},
		{kernels.E5M2, 61439.996, 0x7B},
	}
	for _, c := range nosat {
		if got := c.f.Encode(c.x, kernels.NoSat); got != c.want {
			t.Errorf("%v kernels.NoSat(%g) = %#02x, want %#02x", c.f, c.x, got, c.want)
		}
	}
}

// ref is an exact reference written from the format definition alone: every finite value
// as a big rational, and round-to-nearest-even done by comparing distances exactly.
type ref struct {
	vals []*big.Rat // non-negative finite values, increasing; vals[i] has code i
	next *big.Rat   // the value one step beyond max, had the exponent range no limit
	grid []*big.Rat // vals, then next
	nan  []bool     // per code
	inf  int        // code of +Inf, -1 if none
}

func newRef(f kernels.FP8) ref {
	var ebits, mbits, bias int
	switch f {
	case kernels.E4M3:
		ebits, mbits, bias = 4, 3, 7
	case kernels.E5M2:
		ebits, mbits, bias = 5, 2, 15
	}
	value := func(e, m int) *big.Rat {
		// (e == 0 ? m/2^mbits : 1 + m/2^mbits) * 2^(max(e,1) - bias)
		v := big.NewRat(int64(m), int64(1)<<mbits)
		if e != 0 {
			v.Add(v, big.NewRat(1, 1))
		}
		x := max(e, 1) - bias
		if x >= 0 {
			return v.Mul(v, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), uint(x))))
		}
		return v.Quo(v, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), uint(-x))))
	}
	r := ref{nan: make([]bool, 256), inf: -1}
	top := 1<<ebits - 1
	for c := range 128 {
		e, m := c>>mbits, c&(1<<mbits-1)
		special := false
		if f == kernels.E4M3 && e == top && m == 1<<mbits-1 {
			special = true
			r.nan[c], r.nan[c|0x80] = true, true
		}
		if f == kernels.E5M2 && e == top {
			special = true
			if m == 0 {
				r.inf = c
			} else {
				r.nan[c], r.nan[c|0x80] = true, true
			}
		}
		if special {
			if r.next == nil {
				if f == kernels.E4M3 {
					r.next = value(e, m) // 480: same exponent, next mantissa
				} else {
					r.next = value(e, 0) // 65536: the next binade
				}
			}
			continue
		}
		r.vals = append(r.vals, value(e, m))
	}
	r.grid = append(append([]*big.Rat{}, r.vals...), r.next)
	return r
}

// encode rounds x exactly and returns its code in kernels.SatFinite and in kernels.NoSat mode.
func (r ref) encode(f kernels.FP8, x float32) (sat, nosat uint8) {
	if math.IsNaN(float64(x)) {
		return 0x7F, 0x7F
	}
	var sign uint8
	if math.Signbit(float64(x)) {
		sign = 0x80
	}
	maxC := len(r.vals) - 1
	over := func() (uint8, uint8) {
		if f == kernels.E4M3 {
			return uint8(maxC) | sign, 0x7F | sign
		}
		return uint8(maxC) | sign, uint8(r.inf) | sign
	}
	if math.IsInf(float64(x), 0) {
		return over()
	}
	a := new(big.Rat).SetFloat64(math.Abs(float64(x)))
	// i: the last grid value <= a.
	i := sort.Search(len(r.grid), func(i int) bool { return r.grid[i].Cmp(a) > 0 }) - 1
	pick := i // at or beyond the value past max: overflow
	if i < len(r.grid)-1 {
		lo := new(big.Rat).Sub(a, r.grid[i])
		hi := new(big.Rat).Sub(r.grid[i+1], a)
		switch lo.Cmp(hi) {
		case 1:
			pick = i + 1
		case 0: // a tie: the even code wins; i <= maxC here, so code i is i itself
			if i%2 == 1 {
				pick = i + 1
			}
		}
	}
	if pick > maxC {
		return over()
	}
	return uint8(pick) | sign, uint8(pick) | sign
}

func TestDecodeAllCodes(t *testing.T) {
	for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
		r := newRef(f)
		for c := range 256 {
			got := f.Decode(uint8(c))
			switch {
			case r.nan[c]:
				if !math.IsNaN(float64(got)) {
					t.Errorf("%v.Decode(%#02x) = %g, want NaN", f, c, got)
				}
			case c&0x7F == r.inf:
				if !math.IsInf(float64(got), 1-2*(c>>7)) {
					t.Errorf("%v.Decode(%#02x) = %g, want Inf", f, c, got)
				}
			default:
				want := new(big.Rat).Set(r.vals[c&0x7F])
				if c&0x80 != 0 {
					want.Neg(want)
				}
				if new(big.Rat).SetFloat64(float64(got)).Cmp(want) != 0 || math.Signbit(float64(got)) != (c&0x80 != 0) {
					t.Errorf("%v.Decode(%#02x) = %g, want %s", f, c, got, want.FloatString(12))
				}
				if back := f.Encode(got, kernels.NoSat); back != uint8(c) {
					t.Errorf("%v: Encode(Decode(%#02x)) = %#02x", f, c, back)
				}
			}
		}
	}
	if kernels.E4M3.Max() != 448 || kernels.E5M2.Max() != 57344 {
		t.Errorf("Max = %g, %g; want 448, 57344", kernels.E4M3.Max(), kernels.E5M2.Max())
	}
}

// Every bfloat16 bit pattern, as float32, in both fp8Formats and both modes.
func TestEncodeExhaustiveBFloat16(t *testing.T) {
	for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
		r := newRef(f)
		for h := range 1 << 16 {
			x := math.Float32frombits(uint32(h) << 16)
			sat, nosat := r.encode(f, x)
			if got := f.Encode(x, kernels.SatFinite); got != sat {
				t.Fatalf("%v: Encode(%g [bf16 %#04x], kernels.SatFinite) = %#02x, want %#02x", f, x, h, got, sat)
			}
			if got := f.Encode(x, kernels.NoSat); got != nosat {
				t.Fatalf("%v: Encode(%g [bf16 %#04x], kernels.NoSat) = %#02x, want %#02x", f, x, h, got, nosat)
			}
		}
	}
}

// midpoints are every midpoint between neighbouring values of the grid (the one beyond
// max included) and the float32 values one and two ulps either side, with both signs.
func (r ref) midpoints() []float32 {
	var xs []float32
	for i := 0; i+1 < len(r.grid); i++ {
		sum := new(big.Rat).Add(r.grid[i], r.grid[i+1])
		mid, _ := sum.Quo(sum, big.NewRat(2, 1)).Float32() // exact: FP8 midpoints fit float32
		for d := int32(-2); d <= 2; d++ {
			x := math.Float32frombits(uint32(int32(math.Float32bits(mid)) + d))
			xs = append(xs, x, -x)
		}
	}
	return xs
}

// bfloat16 inputs have 16 zero low bits, so they never test the sticky bits just above or
// below a tie. Check every midpoint between neighbouring FP8 values (and the one beyond
// max) and the float32 values one and two ulps either side, plus random float32 values.
func TestEncodeMidpointsAndRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
		r := newRef(f)
		xs := r.midpoints()
		for range 20000 {
			xs = append(xs, math.Float32frombits(rng.Uint32()))
		}
		for _, x := range xs {
			sat, nosat := r.encode(f, x)
			if got := f.Encode(x, kernels.SatFinite); got != sat {
				t.Fatalf("%v: Encode(%g [%#08x], kernels.SatFinite) = %#02x, want %#02x", f, x, math.Float32bits(x), got, sat)
			}
			if got := f.Encode(x, kernels.NoSat); got != nosat {
				t.Fatalf("%v: Encode(%g [%#08x], kernels.NoSat) = %#02x, want %#02x", f, x, math.Float32bits(x), got, nosat)
			}
		}
	}
}
