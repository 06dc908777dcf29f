package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herdml/herd/kernels"
)

// fp8be runs the FP8 tests' ops.
var fp8be = New[float32]()

// quantizeHost is the Backend's Quantize on host slices (nil: not written).
func quantizeHost(codes []uint8, vals, src []float32, scale float32, f kernels.FP8) float32 {
	return fp8be.Quantize(kernels.HostBuf(codes), kernels.HostBuf(vals), kernels.HostBuf(src), scale, f)
}

// dequantizeHost is the Backend's Dequantize on host slices.
func dequantizeHost(dst []float32, src []uint8, scaleInv float32, f kernels.FP8) {
	fp8be.Dequantize(kernels.HostBuf(dst), kernels.HostBuf(src), scaleInv, f)
}

// amaxHost is the Backend's Amax of a host slice.
func amaxHost(x []float32) float32 { return fp8be.Amax(kernels.HostBuf(x)) }

func randTensor(n int, seed uint64, std float64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(std * rng.NormFloat64())
	}
	return x
}

// asmLoops names the instruction sets of the assembly loops this CPU runs, best first,
// and useLoops selects one of them ("go": none, the Go loops alone); empty where there is
// no assembly.
var (
	asmLoops []string
	useLoops func(name string)
)

// forEachImpl runs test with the Go loops and with each set of assembly loops.
func forEachImpl(t *testing.T, test func(t *testing.T)) {
	if len(asmLoops) > 0 {
		defer useLoops(asmLoops[0])
		useLoops("go")
	}
	t.Run("go", test)
	for _, name := range asmLoops {
		useLoops(name)
		t.Run(name, test)
	}
}

// The fast paths must agree with Encode/Decode element by element, across chunk borders,
// on every kind of value: normal, subnormal after scaling, overflowing, Inf, NaN, ±0;
// and write nothing past the end of dst.
func TestQuantizeMatchesEncode(t *testing.T) {
	forEachImpl(t, testQuantizeMatchesEncode)
}

func testQuantizeMatchesEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	src := randTensor(3*4096+17, 3, 1)
	for i := range src[:5000] { // magnitudes spread over 2^-40 .. 2^40
		src[i] = float32(math.Copysign(math.Exp2(80*rng.Float64()-40), rng.Float64()-0.5))
	}
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1e-45, 3e38, -3e38,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 0x1p-20, -0x1p-12}
	for i, x := range special {
		src[6000+i*500] = x
	}
	const guard = 16
	for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
		for _, scale := range []float32{1, 100, 3.7e-3} {
			codes := make([]uint8, len(src)+guard)
			for i := range codes {
				codes[i] = 0xAA
			}
			vals := make([]float32, len(src))
			amax := quantizeHost(codes[:len(src)], nil, src, scale, f)
			for i, c := range codes[len(src):] {
				if c != 0xAA {
					t.Fatalf("%v: guard byte %d overwritten", f, i)
				}
			}
			if !math.IsNaN(float64(amax)) {
				t.Errorf("%v: amax of a tensor holding NaN = %g, want NaN", f, amax)
			}
			amax2 := quantizeHost(nil, vals, src, scale, f)
			if math.Float32bits(amax2) != math.Float32bits(amax) {
				t.Errorf("%v: amax %g from vals-only pass, %g from codes pass", f, amax2, amax)
			}
			back := make([]float32, len(src))
			dequantizeHost(back, codes[:len(src)], 1/scale, f)
			for i, x := range src {
				want := f.Encode(x*scale, kernels.SatFinite)
				if codes[i] != want {
					t.Fatalf("%v scale %g: code[%d] of %g = %#02x, want %#02x", f, scale, i, x, codes[i], want)
				}
				if d := f.Decode(want); math.Float32bits(vals[i]) != math.Float32bits(d) {
					t.Fatalf("%v: vals[%d] = %g, want %g", f, i, vals[i], d)
				}
				if d := f.Decode(want) * (1 / scale); math.Float32bits(back[i]) != math.Float32bits(d) {
					t.Fatalf("%v: Dequantize[%d] = %g, want %g", f, i, back[i], d)
				}
			}
		}
	}
	finite := randTensor(5003, 4, 2)
	finite[1234] = -77
	if got := quantizeHost(make([]uint8, len(finite)), nil, finite, 1, kernels.E4M3); got != 77 || got != amaxHost(finite) {
		t.Errorf("amax = %g, Amax = %g, want 77", got, amaxHost(finite))
	}
	if amaxHost(nil) != 0 {
		t.Errorf("Amax(nil) = %g, want 0", amaxHost(nil))
	}
}

func BenchmarkQuantize(b *testing.B) {
	const n = 1 << 20
	src := randTensor(n, 1, 1)
	dst := make([]uint8, n)
	for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
		b.Run(f.String(), func(b *testing.B) {
			for b.Loop() {
				quantizeHost(dst, nil, src, 100, f)
			}
			b.ReportMetric(float64(5*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

func BenchmarkQuantizeDecoded(b *testing.B) {
	const n = 1 << 20
	src := randTensor(n, 1, 1)
	dst := make([]uint8, n)
	vals := make([]float32, n)
	b.Run("codes+vals", func(b *testing.B) {
		for b.Loop() {
			quantizeHost(dst, vals, src, 100, kernels.E4M3)
		}
		b.ReportMetric(float64(9*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
	b.Run("vals", func(b *testing.B) {
		for b.Loop() {
			quantizeHost(nil, vals, src, 100, kernels.E5M2)
		}
		b.ReportMetric(float64(8*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
}

func BenchmarkDequantize(b *testing.B) {
	const n = 1 << 20
	src := make([]uint8, n)
	quantizeHost(src, nil, randTensor(n, 1, 1), 100, kernels.E4M3)
	dst := make([]float32, n)
	for b.Loop() {
		dequantizeHost(dst, src, 0.01, kernels.E4M3)
	}
	b.ReportMetric(float64(5*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

var sink float32

// The naive loop, for comparison: Encode per element and a float compare for amax.
func BenchmarkQuantizeNaive(b *testing.B) {
	const n = 1 << 20
	src := randTensor(n, 1, 1)
	dst := make([]uint8, n)
	for b.Loop() {
		var m float32
		for i, x := range src {
			m = max(m, float32(math.Abs(float64(x))))
			dst[i] = kernels.E4M3.Encode(x*100, kernels.SatFinite)
		}
		sink = m
	}
	b.ReportMetric(float64(5*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

// Dequantize, its assembly and its Go loop, on every code of both fp8Formats (subnormals,
// ±0, NaN and Inf codes included; then the finite ones alone in blocks of 8): Decode(c)·
// scaleInv bit for bit.
func TestDequantizeAllCodes(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		codes := make([]uint8, 0, 2*256)
		for c := range 256 {
			codes = append(codes, uint8(c))
		}
		for c := range 256 { // the same codes in blocks of 8 without NaN or Inf, where possible
			if v := kernels.E5M2.Decode(uint8(c)); !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
				codes = append(codes, uint8(c))
			}
		}
		for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
			for _, k := range []float32{1, 0.3, 0x1p-100} {
				got := make([]float32, len(codes))
				dequantizeHost(got, codes, k, f)
				for i, c := range codes {
					if want := f.Decode(c) * k; math.Float32bits(got[i]) != math.Float32bits(want) && !(want != want && got[i] != got[i]) {
						t.Fatalf("%v ×%g: code %#02x gives %g, want %g", f, k, c, got[i], want)
					}
				}
			}
		}
	})
}
