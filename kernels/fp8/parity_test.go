package fp8

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
)

// gemm is the pair of calls a model makes for one linear layer: the plain float32 one,
// or an FP8 Linear behind the same two methods (the converter idea).
type gemm interface {
	Forward(y, x, w kernels.Buf[float32], s float32, n, in, out int)
	Backward(dx, dw, dy kernels.Buf[float32], s float32, accumulate bool)
}

// fp32Linear is the float32 reference: it keeps x and w for the backward.
type fp32Linear struct {
	be         kernels.Backend[float32]
	x, w       kernels.Buf[float32]
	n, in, out int
}

func (l *fp32Linear) Forward(y, x, w kernels.Buf[float32], s float32, n, in, out int) {
	l.x, l.w, l.n, l.in, l.out = x, w, n, in, out
	l.be.MatMul(y, x, w, n, in, out, false, true, false)
	l.be.Scale(y.Slice(0, n*out), s)
}

func (l *fp32Linear) Backward(dx, dw, dy kernels.Buf[float32], s float32, accumulate bool) {
	n, in, out := l.n, l.in, l.out
	tmp := kernels.Alloc[float32](l.be, max(n*in, out*in))
	l.be.MatMul(tmp.Slice(0, out*in), dy, l.x, out, n, in, true, false, false)
	l.be.Axpy(dw.Slice(0, out*in), tmp.Slice(0, out*in), s)
	if !accumulate {
		kernels.Zero(l.be, dx.Slice(0, n*in))
	}
	l.be.MatMul(tmp.Slice(0, n*in), dy, l.w, n, out, in, false, false, false)
	l.be.Axpy(dx.Slice(0, n*in), tmp.Slice(0, n*in), s)
}

// trainMLP trains y = W2·relu(W1·x) on a noisy random teacher with SGD, through the given
// linears, calling endStep after each optimizer step, and returns the loss of each step
// (mean squared error).
func trainMLP(l1, l2 gemm, endStep func() error, steps int) []float64 {
	const B, D, H, O = 64, 32, 64, 8
	rng := rand.New(rand.NewPCG(7, 8))
	normal := func(n int, std float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(std * rng.NormFloat64())
		}
		return v
	}
	teacher1, teacher2 := normal(H*D, 1/math.Sqrt(D)), normal(O*H, 1/math.Sqrt(H))
	w1, w2 := normal(H*D, 1/math.Sqrt(D)), normal(O*H, 1/math.Sqrt(H))
	dw1, dw2 := make([]float32, H*D), make([]float32, O*H)
	h, a, y, t := make([]float32, B*H), make([]float32, B*H), make([]float32, B*O), make([]float32, B*O)
	dh, da, dy, dx := make([]float32, B*H), make([]float32, B*H), make([]float32, B*O), make([]float32, B*D)
	var losses []float64
	for range steps {
		x := normal(B*D, 1)
		// target: the teacher (in float64) plus noise, so the loss has a floor far above
		// FP8's resolution, as a language model's loss has.
		for b := range B {
			var th [H]float64
			for j := range H {
				for k := range D {
					th[j] += float64(teacher1[j*D+k]) * float64(x[b*D+k])
				}
				th[j] = max(th[j], 0)
			}
			for o := range O {
				var v float64
				for j := range H {
					v += float64(teacher2[o*H+j]) * th[j]
				}
				t[b*O+o] = float32(v + 0.3*rng.NormFloat64())
			}
		}
		l1.Forward(hb(h), hb(x), hb(w1), 1, B, D, H)
		for i, v := range h {
			a[i] = max(v, 0)
		}
		l2.Forward(hb(y), hb(a), hb(w2), 1, B, H, O)
		var loss float64
		for i := range y {
			d := float64(y[i] - t[i])
			loss += d * d / float64(len(y))
			dy[i] = float32(2 * d / float64(len(y)))
		}
		losses = append(losses, loss)
		clear(dw1)
		clear(dw2)
		l2.Backward(hb(da), hb(dw2), hb(dy), 1, false)
		for i := range dh {
			dh[i] = 0
			if h[i] > 0 {
				dh[i] = da[i]
			}
		}
		l1.Backward(hb(dx), hb(dw1), hb(dh), 1, false)
		for i := range w1 {
			w1[i] -= 0.05 * dw1[i]
		}
		for i := range w2 {
			w2[i] -= 0.05 * dw2[i]
		}
		if err := endStep(); err != nil {
			panic(err)
		}
	}
	return losses
}

// Loss parity: the same network, init and data trained in float32 and through FP8
// Linears end within 1% of each other (mean loss of the last 50 steps), for both recipes.
func TestLossParityMLP(t *testing.T) {
	const steps = 300
	be := device.CPU[float32]()
	ref := trainMLP(&fp32Linear{be: be}, &fp32Linear{be: be}, func() error { return nil }, steps)
	tail := func(l []float64) float64 {
		var s float64
		for _, v := range l[len(l)-50:] {
			s += v
		}
		return s / 50
	}
	if tail(ref) > 0.5*ref[0] {
		t.Fatalf("the float32 run did not learn: loss %g -> %g", ref[0], tail(ref))
	}
	for _, cfg := range []Config{
		{Recipe: Delayed, History: 16},
		{Recipe: Current, History: 1},
		{Recipe: Delayed, History: 4, Amax: AmaxMostRecent, Margin: 1, Pow2: true},
	} {
		s := newScaling(t, cfg)
		got := trainMLP(s.Linear("l1"), s.Linear("l2"), s.Update, steps)
		gap := tail(got)/tail(ref) - 1
		t.Logf("%+v: loss %.5f -> %.5f (fp32 %.5f -> %.5f), gap %+.3f%%", cfg, got[0], tail(got), ref[0], tail(ref), 100*gap)
		if math.Abs(gap) > 0.01 {
			t.Errorf("%+v: final loss %g vs float32 %g: gap %.2f%% above 1%%", cfg, tail(got), tail(ref), 100*gap)
		}
	}
}
