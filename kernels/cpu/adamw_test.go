package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestAdamWKernels: every vector AdamW gives its Go twin's bits (parameters and both
// moments) at lengths around its 8-lane step, with and without a clipping factor, on
// gradients that include zeros and a NaN, and writes nothing outside its slices; the twin
// is within float32 rounding of the update written the way PyTorch writes it, in float64.
func TestAdamWKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, n := range []int{0, 1, 5, 7, 8, 9, 15, 16, 17, 33, 101} {
		for _, gscale := range []float64{1, 0.37} {
			c := AdamWCoeffs{B1: 0.9, C1: 1 - 0.9, B2: 0.95, C2: 1 - 0.95, Decay: 1 - 3e-3*0.1, LR: 3e-3,
				BC1: 1 - math.Pow(0.9, 3), BC2: 1 - math.Pow(0.95, 3), Eps: 1e-8, GScale: gscale}
			p, g, m, v := randSlice(r, n), randSlice(r, n), randSlice(r, n), randSlice(r, n)
			for i := range v {
				v[i] = v[i] * v[i] / 10 // a second moment is never negative
			}
			if n > 2 {
				g[1], v[1] = 0, 0 // only eps keeps the division finite
			}
			// The twin first, into plain copies, then the reference from the inputs.
			wp, wm, wv := slices.Clone(p), slices.Clone(m), slices.Clone(v)
			adamWGo(wp, g, wm, wv, c)
			for i := range p {
				gr := float64(g[i] * float32(gscale))
				mi := 0.9*float64(m[i]) + 0.1*gr
				vi := 0.95*float64(v[i]) + 0.05*gr*gr
				stepSize := c.LR / c.BC1
				want := float64(p[i])*c.Decay - stepSize*mi/(math.Sqrt(vi)/math.Sqrt(c.BC2)+c.Eps)
				if d := math.Abs(float64(wp[i]) - want); d > 2e-7*math.Abs(want)+1e-12 {
					t.Fatalf("n=%d p[%d] = %v, PyTorch's form in float64 %v", n, i, wp[i], want)
				}
				if math.Abs(float64(wm[i])-mi) > 1e-7*math.Abs(mi) || math.Abs(float64(wv[i])-vi) > 1e-7*math.Abs(vi) {
					t.Fatalf("n=%d moments %v %v, want %v %v", n, wm[i], wv[i], mi, vi)
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
	c := AdamWCoeffs{B1: 0.9, C1: 0.1, B2: 0.95, C2: 0.05, Decay: 1 - 1e-4, LR: 1e-3, BC1: 0.5, BC2: 0.3, Eps: 1e-8, GScale: 1}
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
