package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestAdamWKernels: every vector AdamW gives its Go twin's bits (parameters and both
// moments) at lengths around its 16-lane step, with and without a clipping factor, on
// gradients that include zeros and a NaN, and writes nothing outside its slices; the
// float32 twin is within float32 rounding of the update computed in float64.
func TestAdamWKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, n := range []int{0, 1, 5, 15, 16, 17, 31, 33, 101} {
		for _, gscale := range []float64{1, 0.37} {
			const lr, wd, b1, b2 = 3e-3, 0.1, 0.9, 0.95
			bc1, bc2 := 1-math.Pow(b1, 3), 1-math.Pow(b2, 3)
			c := AdamWCoeffs{B1: b1, C1: 1 - b1, B2: b2, C2: 1 - b2, Decay: 1 - lr*wd, StepSize: lr / bc1,
				BC2Sqrt: math.Sqrt(bc2), Eps: 1e-8, GScale: gscale}
			p, g, m, v := randSlice(r, n), randSlice(r, n), randSlice(r, n), randSlice(r, n)
			for i := range v {
				v[i] = v[i] * v[i] / 10 // a second moment is never negative
			}
			if n > 2 {
				g[1], v[1] = 0, 0 // only eps keeps the division finite
			}
			// The twin first, into copies, then the update in float64 from the inputs.
			wp, wm, wv := slices.Clone(p), slices.Clone(m), slices.Clone(v)
			adamWGo(wp, g, wm, wv, c)
			for i := range p {
				gr := float64(g[i]) * gscale
				mi := b1*float64(m[i]) + (1-b1)*gr
				vi := b2*float64(v[i]) + (1-b2)*gr*gr
				pd, step := float64(p[i])*(1-lr*wd), lr/bc1*mi/(math.Sqrt(vi/bc2)+1e-8)
				if d := math.Abs(float64(wp[i]) - (pd - step)); d > 4e-7*(math.Abs(pd)+math.Abs(step)) {
					t.Fatalf("n=%d p[%d] = %v, in float64 %v", n, i, wp[i], pd-step)
				}
				if math.Abs(float64(wm[i])-mi) > 3e-7*(b1*math.Abs(float64(m[i]))+math.Abs(gr)) ||
					math.Abs(float64(wv[i])-vi) > 4e-7*(b2*float64(v[i])+gr*gr) {
					t.Fatalf("n=%d moments %v %v, in float64 %v %v", n, wm[i], wv[i], mi, vi)
				}
			}
			if n > 4 {
				g[3] = float32(math.NaN()) // a NaN gradient: NaN parameter and moments
				wp, wm, wv = slices.Clone(p), slices.Clone(m), slices.Clone(v)
				if adamWGo(wp, g, wm, wv, c); !math.IsNaN(float64(wp[3])) || !math.IsNaN(float64(wv[3])) {
					t.Fatalf("n=%d: NaN gradient gave p %v, v %v", n, wp[3], wv[3])
				}
			}
			for _, im := range impls {
				if !im.available || im.vec == nil || im.vec.adamW == nil {
					continue
				}
				gp, pOK := guarded(n, 1)
				gm, mOK := guarded(n, 2)
				gv, vOK := guarded(n, 3)
				copy(gp, p)
				copy(gm, m)
				copy(gv, v)
				im.vec.adamW(gp, g, gm, gv, c)
				if !pOK() || !mOK() || !vOK() {
					t.Fatalf("%s n=%d: wrote outside p, m or v", im.name, n)
				}
				for _, s := range [][2][]float32{{gp, wp}, {gm, wm}, {gv, wv}} {
					for i := range s[0] {
						if math.Float32bits(s[0][i]) != math.Float32bits(s[1][i]) {
							t.Fatalf("%s n=%d gscale %v: element %d is %v, twin %v", im.name, n, gscale, i, s[0][i], s[1][i])
						}
					}
				}
			}
		}
	}
}

// BenchmarkAdamW is one thread's AdamW over 65,536 elements (the optimizer's block: 1 MiB
// of parameters, gradients and moments), the Go twin beside each vector kernel, in ns per
// element.
func BenchmarkAdamW(b *testing.B) {
	const n = 1 << 16
	r := rand.New(rand.NewPCG(33, 34))
	p, g, m, v := randSlice(r, n), randSlice(r, n), randSlice(r, n), randSlice(r, n)
	for i := range v {
		v[i] *= v[i]
	}
	c := AdamWCoeffs{B1: 0.9, C1: 0.1, B2: 0.95, C2: 0.05, Decay: 1 - 1e-4, StepSize: 2e-3, BC2Sqrt: 0.5, Eps: 1e-8, GScale: 1}
	run := func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				f()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/element")
		})
	}
	run("go", func() { adamWGo(p, g, m, v, c) })
	for _, im := range impls {
		if im.available && im.vec != nil && im.vec.adamW != nil {
			run(im.name, func() { im.vec.adamW(p, g, m, v, c) })
		}
	}
}

// TestSumSquares64Kernels: every vector sumSquares64 gives its Go twin's bits at lengths
// around its 8-lane step and carries Inf and NaN through; the twin is within float64
// rounding of the plain sum in order (the squares of float32 values are exact in float64).
func TestSumSquares64Kernels(t *testing.T) {
	r := rand.New(rand.NewPCG(37, 38))
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 100, 1001} {
		x := randSlice(r, n)
		want := sumSquares64Go(x)
		var exact float64
		for _, v := range x {
			exact += float64(v) * float64(v)
		}
		if math.Abs(want-exact) > float64(n+1)*0x1p-52*exact {
			t.Fatalf("n=%d: %v, the sum in order %v", n, want, exact)
		}
		for _, im := range impls {
			if !im.available || im.vec == nil || im.vec.sumSquares64 == nil {
				continue
			}
			if got := im.vec.sumSquares64(x); math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("%s n=%d: %v, twin %v", im.name, n, got, want)
			}
			if n > 3 {
				y := slices.Clone(x)
				y[2] = float32(math.Inf(-1))
				if got := im.vec.sumSquares64(y); !math.IsInf(got, 1) {
					t.Fatalf("%s n=%d: -Inf element gives %v, want +Inf", im.name, n, got)
				}
				y[3] = float32(math.NaN())
				if got := im.vec.sumSquares64(y); !math.IsNaN(got) {
					t.Fatalf("%s n=%d: NaN element gives %v", im.name, n, got)
				}
			}
		}
	}
}
