package optim

import (
	"math"
	"runtime"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

// newAdamW is New on the CPU backend.
func newAdamW[F kernels.Float](total int, groups []Group, beta1, beta2 float64) (*AdamW[F], error) {
	return New(device.CPU[F](), total, groups, beta1, beta2)
}

// buf is a CPU backend buffer that views s: the optimizer's updates show in s.
func buf[F kernels.Float](s []F) kernels.Buf[F] { return kernels.HostBuf(s) }

// gradNorm is GradNorm on the CPU backend.
func gradNorm[F kernels.Float](grads []F) float64 { return GradNorm(device.CPU[F](), buf(grads)) }

// Two AdamW steps on one parameter, worked out by hand (β1 0.9, β2 0.999, lr 0.1, wd 0.1):
//
//	t=1, g=0.5:  m=0.05, v=0.00025, m̂=0.5, v̂=0.25
//	             p = 1·0.99 - 0.1·0.5/(0.5+1e-8)               = 0.890000002
//	t=2, g=-1:   m=-0.055, v=0.00124975, m̂=-0.055/0.19, v̂=0.00124975/0.001999
//	             p = 0.890000002·0.99 + 0.1·0.2894737/0.7906881 = 0.9177103542
func TestAdamWByHand(t *testing.T) {
	o, err := newAdamW[float64](1, []Group{{Name: "w", Size: 1, LR: 0.1, WeightDecay: 0.1, Eps: 1e-8}}, 0.9, 0.999)
	if err != nil {
		t.Fatal(err)
	}
	p := []float64{1}
	o.Step(buf(p), buf([]float64{0.5}), 1)
	if !near(p[0], 0.890000002, 1e-12) {
		t.Fatalf("after step 1 p = %.12g, want 0.890000002", p[0])
	}
	if !near(float64(o.M.Host()[0]), 0.05, 1e-7) || !near(float64(o.V.Host()[0]), 0.00025, 1e-7) {
		t.Fatalf("moments m=%g v=%g, want 0.05, 0.00025", o.M.Host()[0], o.V.Host()[0])
	}
	o.Step(buf(p), buf([]float64{-1}), 1)
	// The moments went through float32 storage; allow for that rounding.
	if !near(p[0], 0.9177103542205653, 1e-7) {
		t.Fatalf("after step 2 p = %.12g, want 0.9177103542", p[0])
	}
	if o.T != 2 {
		t.Fatalf("T = %d, want 2", o.T)
	}
}

// Each tensor gets its own LR, weight decay and eps; with a zero gradient only the decoupled
// decay moves a weight: p·(1 - lr·factor·wd).
func TestAdamWPerTensor(t *testing.T) {
	groups := []Group{
		{Name: "a", Offset: 0, Param: 0, Size: 2, LR: 0.5, WeightDecay: 0.2, Eps: 1e-8},
		{Name: "b", Offset: 2, Param: 2, Size: 1, LR: 0.5, WeightDecay: 0, Eps: 1e-8},
		{Name: "c", Offset: 3, Param: 3, Size: 1, LR: 0.01, WeightDecay: 0, Eps: 1},
	}
	o, err := newAdamW[float32](4, groups, 0.9, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	p := []float32{2, -4, 3, 1}
	o.Step(buf(p), buf([]float32{0, 0, 0, 2}), 0.5)
	// a: decay 1 - 0.25·0.2 = 0.95; b: no decay, no gradient; c: m̂=2, v̂=4, step 0.005·2/(2+1).
	want := []float64{1.9, -3.8, 3, 1 - 0.005*2.0/3.0}
	for i := range p {
		if !near(float64(p[i]), want[i], 1e-6) {
			t.Errorf("p[%d] = %g, want %g", i, p[i], want[i])
		}
	}
	if _, err := newAdamW[float32](4, []Group{{Name: "x", Offset: 3, Param: 3, Size: 2}}, 0.9, 0.95); err == nil {
		t.Error("a group past the buffer was accepted")
	}
}

func TestClipFactor(t *testing.T) {
	for _, c := range []struct{ norm, limit, want float64 }{
		{5, 10, 1}, {5, 0, 1}, {5, 1, 1 / (5 + 1e-6)}, {math.NaN(), 1, 1}, {math.Inf(1), 1, 1},
	} {
		if got := ClipFactor(c.norm, c.limit); got != c.want {
			t.Errorf("ClipFactor(%g, %g) = %g, want %g", c.norm, c.limit, got, c.want)
		}
	}
	if n := gradNorm([]float32{3, 4}); n != 5 {
		t.Errorf("GradNorm of (3, 4) = %g, want 5", n)
	}
}

// The norm and the update are the same bits on one thread and on several.
func TestDeterministicAcrossThreads(t *testing.T) {
	n := 3*block + 123
	grads := make([]float32, n)
	for i := range grads {
		grads[i] = float32(math.Sin(float64(i)*0.37)) * float32(1+i%7)
	}
	run := func(procs int) (float64, []float32) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		p := make([]float32, n)
		for i := range p {
			p[i] = float32(math.Cos(float64(i)))
		}
		o, _ := newAdamW[float32](n, []Group{{Size: n / 2, LR: 1e-3, WeightDecay: 0.1, Eps: 1e-8}, {Offset: n / 2, Param: n / 2, Size: n - n/2, LR: 2e-3, Eps: 1e-8}}, 0.9, 0.95)
		o.Step(buf(p), buf(grads), 0.7)
		return gradNorm(grads), p
	}
	n1, p1 := run(1)
	n4, p4 := run(4)
	if math.Float64bits(n1) != math.Float64bits(n4) {
		t.Fatalf("norm on 1 thread %v, on 4 threads %v", n1, n4)
	}
	for i := range p1 {
		if math.Float32bits(p1[i]) != math.Float32bits(p4[i]) {
			t.Fatalf("p[%d]: %v on 1 thread, %v on 4", i, p1[i], p4[i])
		}
	}
}

func TestScheduleByHand(t *testing.T) {
	base := Schedule{Steps: 10, Warmup: 2, MinLRRatio: 0.1}
	cases := []struct {
		decay      string
		decaySteps int
		step       int
		want       float64
	}{
		{Cosine, 0, 1, 0.5}, // warmup: 1/2
		{Cosine, 0, 2, 1},
		{Cosine, 0, 4, 0.1 + 0.9*(1+math.Sqrt2/2)/2}, // p = 2/8: cos(π/4)
		{Cosine, 0, 6, 0.55},                         // p = 1/2: half way
		{Cosine, 0, 10, 0.1},                         // last step reaches the floor
		{Cosine, 0, 50, 0.1},                         // past the end it stays there
		{Linear, 0, 4, 0.775},                        // 1 - 0.9·0.25
		{Linear, 0, 10, 0.1},
		{WSD, 4, 6, 1},    // stable until step 10-4
		{WSD, 4, 8, 0.55}, // half way down the decay
		{WSD, 4, 10, 0.1}, // floor
		{WSD, 0, 8, 1},    // default decay: last 20% = 2 steps, starts after step 8
		{WSD, 0, 9, 0.55}, // half way down
		{Constant, 0, 10, 1},
	}
	for _, c := range cases {
		s := base
		s.Decay, s.DecaySteps = c.decay, c.decaySteps
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := s.Factor(c.step); !near(got, c.want, 1e-12) {
			t.Errorf("%s(decay_steps %d) step %d: %g, want %g", c.decay, c.decaySteps, c.step, got, c.want)
		}
	}
}

// A wsd decay placed at a step stays there when the run grows; one placed by its length
// moves to the new end. Either way the steps before the decay are unchanged.
func TestScheduleDecayStart(t *testing.T) {
	short := Schedule{Steps: 10, Warmup: 2, Decay: WSD, DecayStart: 6, MinLRRatio: 0.1}
	long := short
	long.Steps = 20
	for step, want := range map[int]float64{6: 1, 8: 0.55, 10: 0.1} {
		if got := short.Factor(step); !near(got, want, 1e-12) {
			t.Errorf("10 steps, decay_start 6: step %d = %g, want %g", step, got, want)
		}
	}
	for step, want := range map[int]float64{6: 1, 7: 1 - 0.9/14, 13: 0.55, 20: 0.1} {
		if got := long.Factor(step); !near(got, want, 1e-12) {
			t.Errorf("20 steps, decay_start 6: step %d = %g, want %g", step, got, want)
		}
	}
	late := Schedule{Steps: 10, Warmup: 2, Decay: WSD, DecayStart: 15, MinLRRatio: 0.1}
	if err := late.Validate(); err != nil {
		t.Fatalf("a decay after the run's end (to be reached on resume): %v", err)
	}
	if got := late.Factor(10); got != 1 {
		t.Errorf("decay_start 15 in a 10-step run: step 10 = %g, want 1", got)
	}
	if got, want := late.Factor(3), (Schedule{Steps: 20, Warmup: 2, Decay: WSD, DecayStart: 15, MinLRRatio: 0.1}).Factor(3); got != want {
		t.Errorf("step 3 differs between 10 and 20 steps: %g vs %g", got, want)
	}
}

// A restart at step Start is the whole curve again over the steps left.
func TestScheduleStart(t *testing.T) {
	s := Schedule{Steps: 30, Start: 20, Decay: Cosine, MinLRRatio: 0.1}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for step, want := range map[int]float64{20: 1, 21: 0.1 + 0.9*(1+math.Cos(math.Pi/10))/2, 25: 0.55, 30: 0.1} {
		if got := s.Factor(step); !near(got, want, 1e-12) {
			t.Errorf("cosine restarted at 20 of 30: step %d = %g, want %g", step, got, want)
		}
	}
	w := Schedule{Steps: 30, Start: 20, Decay: WSD, DecayStart: 26, MinLRRatio: 0.1}
	if got := w.Factor(28); !near(got, 0.55, 1e-12) {
		t.Errorf("wsd restarted at 20, decay from 26 to 30: step 28 = %g, want 0.55", got)
	}
}

func TestScheduleValidate(t *testing.T) {
	for _, s := range []Schedule{
		{Steps: 10, Decay: "exp"},
		{Steps: 10, Decay: Cosine, Warmup: -1},
		{Steps: 10, Decay: WSD, DecaySteps: 11},
		{Steps: 10, Decay: Linear, MinLRRatio: 1.5},
		{Steps: 10, Decay: Cosine, DecayStart: 5},             // decay_start is wsd's
		{Steps: 10, Decay: WSD, DecayStart: 5, DecaySteps: 2}, // both place the decay
		{Steps: 10, Decay: WSD, DecayStart: -1},
		{Steps: 10, Decay: Cosine, Start: 10}, // nothing left after the restart
		{Steps: 10, Decay: WSD, Start: 6, DecayStart: 4},
	} {
		if err := s.Validate(); !usererr.Is(err) {
			t.Errorf("%+v: got %v, want a user error", s, err)
		}
	}
}

// BenchmarkAdamWStep is one AdamW update of a buffer the size of the dense benchmark
// model's parameters (about 3.4 million), in ns per element.
func BenchmarkAdamWStep(b *testing.B) {
	const n = 3_400_000
	p, g := make([]float32, n), make([]float32, n)
	for i := range p {
		p[i], g[i] = float32(math.Cos(float64(i))), float32(math.Sin(float64(i)*0.37))
	}
	o, err := newAdamW[float32](n, []Group{{Size: n / 2, LR: 1e-3, WeightDecay: 0.1, Eps: 1e-8}, {Offset: n / 2, Param: n / 2, Size: n - n/2, LR: 2e-3, Eps: 1e-8}}, 0.9, 0.95)
	if err != nil {
		b.Fatal(err)
	}
	o.Step(buf(p), buf(g), 1)
	b.ResetTimer()
	for range b.N {
		o.Step(buf(p), buf(g), 1)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/element")
}

// StepScaled with ClipFactor's value gives the bits of scaling the gradients by it, as
// torch.nn.utils.clip_grad_norm_ does, then Step, on both parameter types, clipping or
// not, and leaves the gradients as they were.
func TestStepScaledMatchesClip(t *testing.T) {
	testStepScaled[float32](t)
	testStepScaled[float64](t)
}

func testStepScaled[F float32 | float64](t *testing.T) {
	n := block + 37
	grads := make([]F, n)
	for i := range grads {
		grads[i] = F(math.Sin(float64(i)*0.37)) * F(1+i%5)
	}
	for _, limit := range []float64{0, 1, 1e9} {
		run := func(fused bool) ([]F, []F) {
			p := make([]F, n)
			for i := range p {
				p[i] = F(math.Cos(float64(i)))
			}
			g := append([]F(nil), grads...)
			o, _ := newAdamW[F](n, []Group{{Size: 100, LR: 1e-3, WeightDecay: 0.1, Eps: 1e-8}, {Offset: 100, Param: 100, Size: n - 100, LR: 2e-3, Eps: 1e-8}}, 0.9, 0.95)
			for range 2 {
				if fused {
					o.StepScaled(buf(p), buf(g), 0.7, ClipFactor(gradNorm(g), limit))
				} else {
					f := F(ClipFactor(gradNorm(g), limit))
					for i := range g {
						g[i] *= f
					}
					o.Step(buf(p), buf(g), 0.7)
				}
			}
			return p, g
		}
		p1, _ := run(false)
		p2, g2 := run(true)
		for i := range p1 {
			if p1[i] != p2[i] {
				t.Fatalf("%T limit %g: p[%d] %v after Clip and Step, %v after StepScaled", p1[i], limit, i, p1[i], p2[i])
			}
			if g2[i] != grads[i] {
				t.Fatalf("%T limit %g: StepScaled changed grads[%d]", p1[i], limit, i)
			}
		}
	}
}

// TestAdamWFrozenGaps checks that groups whose parameters have gaps (frozen tensors) between
// them, while their gradients and moments are packed, get the same updates as when every
// buffer has the parameters' layout.
func TestAdamWFrozenGaps(t *testing.T) {
	p := []float32{1, 2, 3, 4, 5, 6, 7}
	g := []float32{0.5, -1, 2, 0.25, 3, -2, 1}
	packed, err := newAdamW[float32](3, []Group{
		{Name: "a", Offset: 0, Param: 1, Size: 2, LR: 0.1, WeightDecay: 0.1, Eps: 1e-8},
		{Name: "b", Offset: 2, Param: 5, Size: 1, LR: 0.2, Eps: 1e-8},
	}, 0.9, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := newAdamW[float32](7, []Group{
		{Name: "a", Offset: 1, Param: 1, Size: 2, LR: 0.1, WeightDecay: 0.1, Eps: 1e-8},
		{Name: "b", Offset: 5, Param: 5, Size: 1, LR: 0.2, Eps: 1e-8},
	}, 0.9, 0.95)
	p1, p2 := append([]float32(nil), p...), append([]float32(nil), p...)
	for range 3 {
		packed.Step(buf(p1), buf([]float32{g[1], g[2], g[5]}), 1)
		whole.Step(buf(p2), buf(g), 1)
	}
	for i := range p {
		if p1[i] != p2[i] {
			t.Fatalf("parameter %d: %v with packed gradients, %v without (all %v vs %v)", i, p1[i], p2[i], p1, p2)
		}
	}
}
