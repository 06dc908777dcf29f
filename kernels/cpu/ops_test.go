package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/herdml/herd/kernels"
)

// Tests of the model ops. Each forward is checked against a plain float64 loop written
// here, on random inputs at odd sizes; each backward against central finite differences of
// its forward (in float64), with gradient buffers pre-filled so that accumulation is
// checked too. Float32 forwards are compared with the float64 reference as well.

func opRand(r *rand.Rand, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = r.NormFloat64()
	}
	return s
}

func to[F kernels.Float](s []float64) []F {
	out := make([]F, len(s))
	for i, v := range s {
		out[i] = F(v)
	}
	return out
}

// closeTo fails unless got and want agree within tol relative to the larger magnitude
// (absolute below 1).
func closeTo[F kernels.Float](t *testing.T, what string, got []F, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i, w := range want {
		if d := math.Abs(float64(got[i]) - w); d > tol*math.Max(1, math.Abs(w)) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], w)
		}
	}
}

// gradCheck compares grad - before (what a backward accumulated) with central differences
// of f with respect to the elements of x: every one, or about 100 evenly spread over a
// large x to bound the test's time.
func gradCheck(t *testing.T, what string, x, before, grad []float64, f func() float64) {
	t.Helper()
	const h = 1e-6
	step := max(1, len(x)/100)
	for i := 0; i < len(x); i += step {
		v := x[i]
		x[i] = v + h
		up := f()
		x[i] = v - h
		down := f()
		x[i] = v
		num, ana := (up-down)/(2*h), grad[i]-before[i]
		if math.Abs(num-ana) > 1e-6*math.Max(1, math.Abs(num)) {
			t.Fatalf("%s[%d]: backward %.9g, finite difference %.9g", what, i, ana, num)
		}
	}
}

func dot(a, b []float64) float64 {
	var s float64
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

func TestEmbedding(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	be := New[float64]()
	V, C, N := 7, 13, 19
	table := opRand(r, V*C)
	ids := make([]int32, N)
	for i := range ids {
		ids[i] = int32(r.IntN(V))
	}
	ids[3], ids[11] = -1, -1
	const scale = 0.7
	for _, f32 := range []bool{false, true} {
		out := opRand(r, N*C)
		guard := slices.Clone(out)
		want := slices.Clone(out)
		for i, id := range ids {
			if id >= 0 {
				for j := range C {
					want[i*C+j] = scale * table[int(id)*C+j]
				}
			}
		}
		if f32 {
			o := to[float32](guard)
			New[float32]().embedding(o, to[float32](table), ids, C, scale)
			closeTo(t, "float32 embedding", o, want, 1e-6)
			continue
		}
		be.embedding(out, table, ids, C, scale)
		closeTo(t, "embedding", out, want, 0)
	}

	dout := opRand(r, N*C)
	dtable := opRand(r, V*C)
	want := slices.Clone(dtable)
	for i, id := range ids {
		if id >= 0 {
			for j := range C {
				want[int(id)*C+j] += scale * dout[i*C+j]
			}
		}
	}
	be.embeddingBackward(dtable, dout, ids, C, scale)
	closeTo(t, "embedding backward", dtable, want, 1e-14)
}

func TestRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	be := New[float64]()
	N, C, eps := 11, 17, 1e-5
	x, g := opRand(r, N*C), opRand(r, C)
	want := make([]float64, N*C)
	for i := range N {
		var ss float64
		for j := range C {
			ss += x[i*C+j] * x[i*C+j]
		}
		rs := 1 / math.Sqrt(ss/float64(C)+eps)
		for j := range C {
			want[i*C+j] = x[i*C+j] * rs * g[j]
		}
	}
	out, rstd := make([]float64, N*C), make([]float64, N)
	be.rmsNorm(out, rstd, x, g, C, eps)
	closeTo(t, "rmsnorm", out, want, 1e-13)
	out32, rstd32 := make([]float32, N*C), make([]float32, N)
	New[float32]().rmsNorm(out32, rstd32, to[float32](x), to[float32](g), C, eps)
	closeTo(t, "float32 rmsnorm", out32, want, 1e-5)

	dout := opRand(r, N*C)
	dx, dg := opRand(r, N*C), opRand(r, C)
	dx0, dg0 := slices.Clone(dx), slices.Clone(dg)
	be.rmsNormBackward(dx, dg, dout, x, g, rstd, C)
	loss := func() float64 {
		be.rmsNorm(out, rstd, x, g, C, eps)
		return dot(out, dout)
	}
	gradCheck(t, "rmsnorm dx", x, dx0, dx, loss)
	gradCheck(t, "rmsnorm dg", g, dg0, dg, loss)
}

func TestRoPE(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	be := New[float64]()
	N, heads, D, maxPos, theta := 9, 3, 6, 12, 500.0
	cos, sin := make([]float64, maxPos*D/2), make([]float64, maxPos*D/2)
	for p := range maxPos {
		for j := range D / 2 {
			sin[p*D/2+j], cos[p*D/2+j] = math.Sincos(float64(p) * math.Pow(theta, -float64(2*j)/float64(D)))
		}
	}
	pos := make([]int32, N)
	for i := range pos {
		pos[i] = int32(r.IntN(maxPos))
	}
	x := opRand(r, N*heads*D)
	want := make([]float64, len(x))
	for i := range N {
		for h := range heads {
			for j := range D / 2 {
				a := float64(pos[i]) * math.Pow(theta, -float64(2*j)/float64(D))
				re, im := x[(i*heads+h)*D+2*j], x[(i*heads+h)*D+2*j+1]
				// (re + i·im)·e^{i·a}, as Meta's reference multiplies complex pairs.
				want[(i*heads+h)*D+2*j] = re*math.Cos(a) - im*math.Sin(a)
				want[(i*heads+h)*D+2*j+1] = re*math.Sin(a) + im*math.Cos(a)
			}
		}
	}
	y := slices.Clone(x)
	be.roPE(y, pos, cos, sin, heads, D)
	closeTo(t, "rope", y, want, 1e-12)

	// The backward is the adjoint: <RoPE(x), d> = <x, RoPEBackward(d)>.
	d := opRand(r, len(x))
	bd := slices.Clone(d)
	be.roPEBackward(bd, pos, cos, sin, heads, D)
	if a, b := dot(y, d), dot(x, bd); math.Abs(a-b) > 1e-12*math.Abs(a) {
		t.Fatalf("<RoPE(x), d> = %v, <x, RoPEBackward(d)> = %v", a, b)
	}
}

// attentionRef is the textbook computation: the full masked logits matrix per head and
// sequence, its softmax, and P·V.
func attentionRef(q, k, v []float64, doc []int32, B, T, H, KV, D int, scale float64) (out, lse []float64) {
	out, lse = make([]float64, B*T*H*D), make([]float64, B*T*H)
	for b := range B {
		for h := range H {
			kh := h / (H / KV)
			for t := range T {
				logits := make([]float64, T)
				mx := math.Inf(-1)
				for s := range T {
					logits[s] = math.Inf(-1)
					if s > t || doc[b*T+s] != doc[b*T+t] {
						continue
					}
					var d float64
					for j := range D {
						d += q[((b*T+t)*H+h)*D+j] * k[((b*T+s)*KV+kh)*D+j]
					}
					logits[s] = scale * d
					mx = max(mx, logits[s])
				}
				var sum float64
				for s := range T {
					sum += math.Exp(logits[s] - mx)
				}
				lse[(b*T+t)*H+h] = mx + math.Log(sum)
				for s := range T {
					p := math.Exp(logits[s]-mx) / sum
					for j := range D {
						out[((b*T+t)*H+h)*D+j] += p * v[((b*T+s)*KV+kh)*D+j]
					}
				}
			}
		}
	}
	return out, lse
}

func TestAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	be := New[float64]()
	for _, tc := range []struct {
		name           string
		B, T, H, KV, D int
		doc            func(b, t int) int32
	}{
		// Sequence 0 holds documents of 3 and 4 positions, sequence 1 one of 7.
		{"packed", 2, 7, 6, 2, 5, func(b, t int) int32 { return int32(1-b) * int32(min(t/3, 1)) }},
		// Longer than one query block, with documents interleaved rather than contiguous.
		{"interleaved", 2, 67, 4, 2, 3, func(b, t int) int32 { return int32((t / 5 % 3) * b) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			B, T, H, KV, D, scale := tc.B, tc.T, tc.H, tc.KV, tc.D, 0.45
			q, k, v := opRand(r, B*T*H*D), opRand(r, B*T*KV*D), opRand(r, B*T*KV*D)
			doc := make([]int32, B*T)
			for i := range doc {
				doc[i] = tc.doc(i/T, i%T)
			}
			wantOut, wantLSE := attentionRef(q, k, v, doc, B, T, H, KV, D, scale)
			out, lse := make([]float64, B*T*H*D), make([]float64, B*T*H)
			be.attention(out, lse, q, k, v, doc, B, T, H, KV, D, scale)
			closeTo(t, "attention out", out, wantOut, 1e-12)
			closeTo(t, "attention lse", lse, wantLSE, 1e-12)
			out32, lse32 := make([]float32, B*T*H*D), make([]float32, B*T*H)
			New[float32]().attention(out32, lse32, to[float32](q), to[float32](k), to[float32](v), doc, B, T, H, KV, D, float32(scale))
			closeTo(t, "float32 attention out", out32, wantOut, 1e-5)
			closeTo(t, "float32 attention lse", lse32, wantLSE, 1e-5)

			dout := opRand(r, len(out))
			dq, dk, dv := opRand(r, len(q)), opRand(r, len(k)), opRand(r, len(v))
			dq0, dk0, dv0 := slices.Clone(dq), slices.Clone(dk), slices.Clone(dv)
			be.attentionBackward(dq, dk, dv, dout, out, lse, q, k, v, doc, B, T, H, KV, D, scale)
			loss := func() float64 {
				be.attention(out, lse, q, k, v, doc, B, T, H, KV, D, scale)
				return dot(out, dout)
			}
			gradCheck(t, "attention dq", q, dq0, dq, loss)
			gradCheck(t, "attention dk", k, dk0, dk, loss)
			gradCheck(t, "attention dv", v, dv0, dv, loss)
		})
	}
}

func TestSwiGLU(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	be := New[float64]()
	n := 37
	a, u := opRand(r, n), opRand(r, n)
	a[3], a[4] = -100, 100 // saturated gates
	want, wantSig := make([]float64, n), make([]float64, n)
	for i := range n {
		wantSig[i] = 1 / (1 + math.Exp(-a[i]))
		want[i] = a[i] * wantSig[i] * u[i]
	}
	out, sig := make([]float64, n), make([]float64, n)
	be.swiGLU(out, sig, a, u)
	closeTo(t, "swiglu", out, want, 1e-14)
	closeTo(t, "swiglu sigmoid", sig, wantSig, 1e-15)
	out32, sig32 := make([]float32, n), make([]float32, n)
	New[float32]().swiGLU(out32, sig32, to[float32](a), to[float32](u))
	closeTo(t, "float32 swiglu", out32, want, 1e-6)
	closeTo(t, "float32 swiglu sigmoid", sig32, wantSig, 1e-6)

	dout := opRand(r, n)
	da, du := opRand(r, n), opRand(r, n)
	da0, du0 := slices.Clone(da), slices.Clone(du)
	be.swiGLUBackward(da, du, dout, a, u, sig)
	loss := func() float64 {
		be.swiGLU(out, make([]float64, n), a, u)
		return dot(out, dout)
	}
	gradCheck(t, "swiglu da", a, da0, da, loss)
	gradCheck(t, "swiglu du", u, du0, du, loss)
}

func TestCrossEntropy(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	be := New[float64]()
	N, V := 9, 23
	logits := opRand(r, N*V)
	for i := range logits {
		logits[i] *= 4
	}
	targets := make([]int32, N)
	for i := range targets {
		targets[i] = int32(r.IntN(V))
	}
	want := make([]float64, N)
	for i := range N {
		var sum float64
		for j := range V {
			sum += math.Exp(logits[i*V+j])
		}
		want[i] = -math.Log(math.Exp(logits[i*V+int(targets[i])]) / sum)
	}
	loss, lse := make([]float64, N), make([]float64, N)
	be.crossEntropy(loss, lse, logits, targets, V)
	closeTo(t, "cross-entropy", loss, want, 1e-12)
	loss32, lse32 := make([]float32, N), make([]float32, N)
	New[float32]().crossEntropy(loss32, lse32, to[float32](logits), targets, V)
	closeTo(t, "float32 cross-entropy", loss32, want, 1e-5)

	w := opRand(r, N)
	w[4] = 0
	dl := opRand(r, N*V)
	dl0 := slices.Clone(dl)
	be.crossEntropyBackward(dl, logits, lse, targets, w, V)
	gradCheck(t, "cross-entropy dlogits", logits, dl0, dl, func() float64 {
		be.crossEntropy(loss, lse, logits, targets, V)
		return dot(loss, w)
	})
}

func TestScaleAxpyGather(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	be := New[float64]()
	n, C, k := 13, 7, 3
	x, y := opRand(r, n*C), opRand(r, n*C)

	want := slices.Clone(x)
	for i := range want {
		want[i] *= 1.5
	}
	s := slices.Clone(x)
	be.scale(s, 1.5)
	closeTo(t, "scale", s, want, 0)

	for i := range want {
		want[i] = y[i] - 0.25*x[i]
	}
	a := slices.Clone(y)
	be.axpy(a, x, -0.25)
	closeTo(t, "axpy", a, want, 1e-15)

	idx := make([]int32, n*k)
	for i := range idx {
		idx[i] = int32(r.IntN(n))
	}
	w := opRand(r, n*k)
	gathered := make([]float64, n*k*C)
	be.gatherRows(gathered, x, idx, w, C)
	want = make([]float64, n*k*C)
	for i, id := range idx {
		for j := range C {
			want[i*C+j] = w[i] * x[int(id)*C+j]
		}
	}
	closeTo(t, "gather rows", gathered, want, 0)
	be.gatherRows(gathered, x, idx, nil, C)
	for i, id := range idx {
		copy(want[i*C:i*C+C], x[int(id)*C:int(id)*C+C])
	}
	closeTo(t, "gather rows unweighted", gathered, want, 0)

	src := opRand(r, n*k*C)
	sum := slices.Clone(y)
	be.gatherSum(sum, src, idx, w, k, C)
	want = slices.Clone(y)
	for i := range n {
		for p := range k {
			for j := range C {
				want[i*C+j] += w[i*k+p] * src[int(idx[i*k+p])*C+j]
			}
		}
	}
	closeTo(t, "gather sum", sum, want, 1e-14)

	dots := make([]float64, n*k)
	be.rowDots(dots, x, src, idx, C)
	want = make([]float64, n*k)
	for i, id := range idx {
		want[i] = dot(x[int(id)*C:int(id)*C+C], src[i*C:i*C+C])
	}
	closeTo(t, "row dots", dots, want, 1e-14)
}

func TestExpPoly(t *testing.T) {
	for x := -87.3; x < 88.7; x += 0.00731 {
		got, want := expPoly(x), math.Exp(x)
		if math.Abs(got-want) > 3e-7*want {
			t.Fatalf("expPoly(%v) = %v, want %v", x, got, want)
		}
	}
	for _, c := range []struct{ x, want float64 }{{-100, 0}, {100, math.Inf(1)}, {0, 1}} {
		if got := expPoly(c.x); got != c.want {
			t.Errorf("expPoly(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	if got := expPoly(math.NaN()); !math.IsNaN(got) {
		t.Errorf("expPoly(NaN) = %v, want NaN", got)
	}
}
