package fp8

import (
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
)

func randTensor(n int, seed uint64, std float64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(std * rng.NormFloat64())
	}
	return x
}

// problem is one linear layer's data: x [n, in], w [out, in], dy [n, out].
type problem struct {
	n, in, out int
	x, w, dy   []float32
	s          float32
}

func newProblem(n, in, out int) problem {
	p := problem{n: n, in: in, out: out, s: 0.7,
		x: randTensor(n*in, 1, 1), w: randTensor(out*in, 2, 0.05), dy: randTensor(n*out, 3, 1e-3)}
	p.x[5] = 40 // an activation outlier
	p.dy[7] = -0.5
	return p
}

// bound64 returns, per output element of c = s·a·op(b) computed from FP8 copies of a
// and b, a bound on |c - c_exact|: per product, |âb̂ - ab| <= ea|b| + |a|eb + ea·eb with
// e = u|v| + δ (u the format's relative rounding, δ half its smallest subnormal in
// unscaled units), plus float32 accumulation of k terms.
func bound64(a, b []float64, ua, ub, da, db, s float64, m, k, n int, bAt func(p, j int) int) (exact, bound []float64) {
	exact, bound = make([]float64, m*n), make([]float64, m*n)
	for i := range m {
		for j := range n {
			var c, e, mag float64
			for p := range k {
				x, y := a[i*k+p], b[bAt(p, j)]
				ex, ey := ua*math.Abs(x)+da, ub*math.Abs(y)+db
				c += x * y
				e += ex*math.Abs(y) + math.Abs(x)*ey + ex*ey
				mag += (math.Abs(x) + ex) * (math.Abs(y) + ey)
			}
			exact[i*n+j] = s * c
			bound[i*n+j] = s * (e + float64(k+4)*0x1p-24*mag)
		}
	}
	return exact, bound
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func transpose(x []float64, r, c int) []float64 {
	t := make([]float64, len(x))
	for i := range r {
		for j := range c {
			t[j*r+i] = x[i*c+j]
		}
	}
	return t
}

func within(t *testing.T, what string, got []float32, base float32, exact, bound []float64) {
	t.Helper()
	for i := range exact {
		d := math.Abs(float64(got[i]-base) - exact[i])
		if d > bound[i]+0x1p-23*math.Abs(float64(base)) {
			t.Fatalf("%s[%d] = %g, exact %g: error %g above the quantization bound %g", what, i, got[i]-base, exact[i], d, bound[i])
		}
	}
}

// Forward and Backward against float64 references, within the FP8 error bounds; the
// forward also against the float64 product of the exact decoded operands, which only
// float32 accumulation separates from the emulated GEMM.
func TestLinearAgainstFloat64(t *testing.T) {
	p := newProblem(37, 64, 29)
	s := newScaling(t, Config{Recipe: Delayed, History: 4})
	l := s.Linear("layers.0.attn.wq")
	y := make([]float32, p.n*p.out)
	l.Forward(hb(y), hb(p.x), hb(p.w), p.s, p.n, p.in, p.out)

	xd, wd := make([]float32, len(p.x)), make([]float32, len(p.w))
	testBackend.Dequantize(hb(xd), l.x.codes, 1, E4M3)
	testBackend.Dequantize(hb(wd), l.wq.codes, 1, E4M3)
	alpha := float64(p.s) * float64(l.x.scaleInv) * float64(l.wq.scaleInv)
	dec, decBound := bound64(f64(xd), f64(wd), 0, 0, 0, 0, alpha, p.n, p.in, p.out, func(k, j int) int { return j*p.in + k })
	within(t, "y vs decoded operands", y, 0, dec, decBound)

	dE4 := 0x1p-10 // half the smallest E4M3 subnormal
	exact, bound := bound64(f64(p.x), f64(p.w), 0x1p-4, 0x1p-4, dE4*float64(l.x.scaleInv), dE4*float64(l.wq.scaleInv),
		float64(p.s), p.n, p.in, p.out, func(k, j int) int { return j*p.in + k })
	within(t, "y", y, 0, exact, bound)

	dx := make([]float32, p.n*p.in)
	dw := make([]float32, p.out*p.in)
	for i := range dx {
		dx[i] = 1
	}
	for i := range dw {
		dw[i] = 0.5
	}
	l.Backward(hb(dx), hb(dw), hb(p.dy), p.s, true)
	gScale := kernels.FP8Scale(testBackend.Amax(hb(p.dy)), 1, E5M2, 0, false) // first step: just in time
	gInv := 1 / gScale
	dE5 := 0x1p-17 * float64(gInv)
	dyd := make([]float32, len(p.dy))
	for i, v := range p.dy {
		dyd[i] = E5M2.Decode(E5M2.Encode(v*gScale, SatFinite))
	}
	// Tight: against the product of the decoded operands.
	dec, decBound = bound64(f64(dyd), f64(wd), 0, 0, 0, 0, float64(p.s)*float64(gInv)*float64(l.wq.scaleInv),
		p.n, p.out, p.in, func(k, j int) int { return k*p.in + j })
	within(t, "dx vs decoded operands", dx, 1, dec, decBound)
	dec, decBound = bound64(transpose(f64(dyd), p.n, p.out), f64(xd), 0, 0, 0, 0, float64(p.s)*float64(gInv)*float64(l.x.scaleInv),
		p.out, p.n, p.in, func(k, j int) int { return k*p.in + j })
	within(t, "dw vs decoded operands", dw, 0.5, dec, decBound)
	// Loose: against the exact float64 product, within the FP8 rounding bounds.
	// dx = s·dy·w: dy [n, out], w [out, in].
	exact, bound = bound64(f64(p.dy), f64(p.w), 0x1p-3, 0x1p-4, dE5, dE4*float64(l.wq.scaleInv),
		float64(p.s), p.n, p.out, p.in, func(k, j int) int { return k*p.in + j })
	within(t, "dx (accumulated onto 1)", dx, 1, exact, bound)
	// dw = s·dyᵀ·x: dyᵀ [out, n], x [n, in].
	exact, bound = bound64(transpose(f64(p.dy), p.n, p.out), f64(p.x), 0x1p-3, 0x1p-4, dE5, dE4*float64(l.x.scaleInv),
		float64(p.s), p.out, p.n, p.in, func(k, j int) int { return k*p.in + j })
	within(t, "dw (accumulated onto 0.5)", dw, 0.5, exact, bound)

	for i := range dx {
		dx[i] = 1e9
	}
	l.Backward(hb(dx), hb(nil), hb(p.dy), p.s, false)
	exact, bound = bound64(f64(p.dy), f64(p.w), 0x1p-3, 0x1p-4, dE5, dE4*float64(l.wq.scaleInv),
		float64(p.s), p.n, p.out, p.in, func(k, j int) int { return k*p.in + j })
	within(t, "dx (overwritten)", dx, 0, exact, bound)

	// Update turns the recorded amaxes into the delayed scales of the next step.
	if err := s.Update(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sc   *Scaler
		amax float32
	}{{l.in, testBackend.Amax(hb(p.x))}, {l.w, testBackend.Amax(hb(p.w))}, {l.grad, testBackend.Amax(hb(p.dy))}} {
		if want := c.sc.Format().Max() / c.amax; c.sc.Scale() != want {
			t.Errorf("%s: scale %g after Update, want %v max / amax %g = %g", c.sc.Name(), c.sc.Scale(), c.sc.Format(), c.amax, want)
		}
	}
}

// Linears sharing an input give the results of separate ones, with one FP8 copy.
func TestLinearSharingInput(t *testing.T) {
	p := newProblem(16, 32, 24)
	w2 := randTensor(24*32, 9, 0.05)
	run := func(shared bool) (y2, dx, dw []float32) {
		s := newScaling(t, Config{Recipe: Current, History: 1})
		a := s.Linear("q")
		var b *Linear
		if shared {
			b = s.LinearSharingInput("k", a)
		} else {
			b = s.Linear("k")
		}
		y1 := make([]float32, p.n*p.out)
		y2 = make([]float32, p.n*p.out)
		a.Forward(hb(y1), hb(p.x), hb(p.w), 1, p.n, p.in, p.out)
		b.Forward(hb(y2), hb(p.x), hb(w2), 1, p.n, p.in, p.out)
		dx, dw = make([]float32, p.n*p.in), make([]float32, len(w2))
		b.Backward(hb(dx), hb(dw), hb(p.dy), 1, false)
		return y2, dx, dw
	}
	y, dx, dw := run(false)
	ys, dxs, dws := run(true)
	for _, c := range [][2][]float32{{y, ys}, {dx, dxs}, {dw, dws}} {
		for i := range c[0] {
			if math.Float32bits(c[0][i]) != math.Float32bits(c[1][i]) {
				t.Fatalf("shared input: element %d is %g, separate linears give %g", i, c[1][i], c[0][i])
			}
		}
	}
	s := newScaling(t, Config{Recipe: Current, History: 1})
	a := s.Linear("q")
	b := s.LinearSharingInput("k", a)
	y2 := make([]float32, p.n*p.out)
	a.Forward(hb(y2), hb(p.x), hb(p.w), 1, p.n, p.in, p.out)
	defer func() {
		if recover() == nil {
			t.Error("a sharing linear ran on another x without panicking")
		}
	}()
	b.Forward(hb(y2), hb(append([]float32(nil), p.x...)), hb(w2), 1, p.n, p.in, p.out)
}

// Bit-identical whatever the number of threads; an empty batch (an expert that got no
// token) is a no-op.
func TestLinearDeterministicAndEmpty(t *testing.T) {
	p := newProblem(64, 48, 40)
	run := func() []float32 {
		s := newScaling(t, Config{Recipe: Delayed, History: 2})
		l := s.Linear("w")
		y := make([]float32, p.n*p.out)
		dx, dw := make([]float32, p.n*p.in), make([]float32, p.out*p.in)
		for range 2 {
			l.Forward(hb(y), hb(p.x), hb(p.w), 1, p.n, p.in, p.out)
			l.Backward(hb(dx), hb(dw), hb(p.dy), 1, true)
			if err := s.Update(); err != nil {
				t.Fatal(err)
			}
		}
		l.Forward(hb(nil), hb(nil), hb(p.w), 1, 0, p.in, p.out)
		l.Backward(hb(nil), hb(dw), hb(nil), 1, false)
		return append(append(y, dx...), dw...)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	one := run()
	runtime.GOMAXPROCS(4)
	four := run()
	for i := range one {
		if math.Float32bits(one[i]) != math.Float32bits(four[i]) {
			t.Fatalf("element %d: %g with 1 thread, %g with 4", i, one[i], four[i])
		}
	}
}

// BenchmarkLinear runs one forward and backward of a `small` dense FFN up-projection
// (n = 8·256 tokens, 256 -> 768) in plain float32 and in FP8 emulation on the same
// backend, alternating, and reports each one's best time and the emulation's overhead
// (best against best, which shared machines disturb least), for each recipe.
func BenchmarkLinear(b *testing.B) {
	for _, recipe := range []string{Delayed, Current, Blockwise} {
		b.Run(recipe, func(b *testing.B) { benchLinear(b, Config{Recipe: recipe, History: 16}) })
	}
}

func benchLinear(b *testing.B, cfg Config) {
	p := newProblem(8*256, 256, 768)
	be := device.CPU[float32]()
	y := make([]float32, p.n*p.out)
	dx, dw := make([]float32, p.n*p.in), make([]float32, p.out*p.in)
	s, err := NewScaling(cfg, be)
	if err != nil {
		b.Fatal(err)
	}
	l := s.Linear("w1")
	best := [2]time.Duration{time.Hour, time.Hour}
	for b.Loop() {
		t0 := time.Now()
		be.MatMul(hb(y), hb(p.x), hb(p.w), p.n, p.in, p.out, false, true, false)
		be.MatMul(hb(dw), hb(p.dy), hb(p.x), p.out, p.n, p.in, true, false, true)
		be.MatMul(hb(dx), hb(p.dy), hb(p.w), p.n, p.out, p.in, false, false, false)
		t1 := time.Now()
		l.Forward(hb(y), hb(p.x), hb(p.w), 1, p.n, p.in, p.out)
		l.Backward(hb(dx), hb(dw), hb(p.dy), 1, false)
		if err := s.Update(); err != nil {
			b.Fatal(err)
		}
		best[0], best[1] = min(best[0], t1.Sub(t0)), min(best[1], time.Since(t1))
	}
	b.ReportMetric(float64(best[0].Microseconds())/1e3, "fp32-ms")
	b.ReportMetric(float64(best[1].Microseconds())/1e3, "fp8-ms")
	b.ReportMetric(100*(best[1].Seconds()/best[0].Seconds()-1), "overhead-%")
}

// A weight is quantized once per optimizer step: the micro-batches of a step reuse its FP8
// copy (a weight that changed in place in between is not read again), and Update,
// SetFrozen and Restore make the next Forward quantize it afresh.
func TestLinearQuantizesWeightOncePerStep(t *testing.T) {
	p := newProblem(16, 24, 8)
	s := newScaling(t, Config{Recipe: Current, History: 1})
	l := s.Linear("w")
	w := append([]float32(nil), p.w...)
	forward := func() []float32 {
		y := make([]float32, p.n*p.out)
		l.Forward(hb(y), hb(p.x), hb(w), 1, p.n, p.in, p.out)
		return y
	}
	same := func(a, b []float32) bool {
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				return false
			}
		}
		return true
	}
	first := forward()
	for i := range w {
		w[i] *= 2
	}
	if !same(forward(), first) {
		t.Fatal("a second micro-batch of the same step re-read the weight")
	}
	for _, step := range []struct {
		name string
		end  func()
	}{
		{"Update", func() {
			if err := s.Update(); err != nil {
				t.Fatal(err)
			}
		}},
		{"SetFrozen", func() { s.SetFrozen(false) }},
		{"Restore", func() {
			if err := s.Restore(s.State(), "state.json"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		step.end()
		before := forward()
		for i := range w {
			w[i] *= 2
		}
		step.end()
		got := forward()
		if same(got, before) {
			t.Fatalf("after %s the Forward still used the old weight's FP8 copy", step.name)
		}
		// With current scaling, doubling w doubles the scale: the codes stay, y doubles.
		for i := range got {
			if got[i] != 2*before[i] {
				t.Fatalf("after %s: y[%d] = %g, want 2·%g from the doubled weight", step.name, i, got[i], before[i])
			}
		}
	}
}

// With GradFP32 the backward GEMMs take the float32 output gradient as it is, against the
// forward's E4M3 weight and input, and an Inf in it still fails Check.
func TestLinearGradFP32(t *testing.T) {
	p := newProblem(32, 24, 16)
	s := newScaling(t, Config{Recipe: Delayed, History: 4, GradFP32: true})
	l := s.Linear("w")
	y := make([]float32, p.n*p.out)
	dx, dw := make([]float32, p.n*p.in), make([]float32, p.out*p.in)
	l.Forward(hb(y), hb(p.x), hb(p.w), p.s, p.n, p.in, p.out)
	l.Backward(hb(dx), hb(dw), hb(p.dy), p.s, false)

	be := device.CPU[float32]()
	wv, xv := make([]float32, p.out*p.in), make([]float32, p.n*p.in)
	testBackend.Dequantize(hb(wv), l.wq.codes, p.s*l.wq.scaleInv, E4M3)
	testBackend.Dequantize(hb(xv), l.x.codes, p.s*l.x.scaleInv, E4M3)
	wantDx, wantDw := make([]float32, p.n*p.in), make([]float32, p.out*p.in)
	be.MatMul(hb(wantDx), hb(p.dy), hb(wv), p.n, p.out, p.in, false, false, false)
	be.MatMul(hb(wantDw), hb(p.dy), hb(xv), p.out, p.n, p.in, true, false, true)
	for i := range wantDx {
		if math.Float32bits(dx[i]) != math.Float32bits(wantDx[i]) {
			t.Fatalf("dx[%d] = %g, want %g from the float32 dy", i, dx[i], wantDx[i])
		}
	}
	for i := range wantDw {
		if math.Float32bits(dw[i]) != math.Float32bits(wantDw[i]) {
			t.Fatalf("dw[%d] = %g, want %g from the float32 dy", i, dw[i], wantDw[i])
		}
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	dy := append([]float32(nil), p.dy...)
	dy[3] = float32(math.Inf(1))
	l.Backward(hb(dx), hb(dw), hb(dy), p.s, false)
	if err := s.Check(); !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "w.grad") {
		t.Fatalf("Check after an Inf gradient: %v, want ErrNonFinite naming w.grad", err)
	}
}

// Once warm, a step of Linears (forward, backward, Update) and the tile codec allocate
// nothing, for every recipe: their buffers are the backend's, kept from step to step, so a
// training step stays free of allocations.
func TestLinearAllocatesNothingOnceWarm(t *testing.T) {
	p := newProblem(48, 40, 136)
	codec := NewTileCodec(testBackend)
	codes, inv, dec := make([]uint8, len(p.x)), make([]float32, p.n*codec.Scales(p.in)), make([]float32, len(p.x))
	for _, cfg := range []Config{{Recipe: Delayed, History: 4}, {Recipe: Current, History: 1}, {Recipe: Blockwise, History: 1},
		{Recipe: Delayed, History: 2, GradFP32: true}} {
		s := newScaling(t, cfg)
		a := s.Linear("a")
		b := s.LinearSharingInput("b", a)
		y, dx, dw := make([]float32, p.n*p.out), make([]float32, p.n*p.in), make([]float32, p.out*p.in)
		step := func() {
			a.Forward(hb(y), hb(p.x), hb(p.w), 1, p.n, p.in, p.out)
			b.Forward(hb(y), hb(p.x), hb(p.w), 1, p.n, p.in, p.out)
			b.Backward(hb(dx), hb(dw), hb(p.dy), 1, false)
			a.Backward(hb(dx), hb(dw), hb(p.dy), 1, true)
			if err := s.Update(); err != nil {
				t.Fatal(err)
			}
			codec.Encode(hc(codes), hb(inv), hb(p.x), p.in)
			codec.Decode(hb(dec), hc(codes), hb(inv), p.in)
		}
		step()
		if n := testing.AllocsPerRun(5, step); n != 0 {
			t.Errorf("%s: %v allocations per step once warm, want 0", cfg.Recipe, n)
		}
	}
}
