package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// Each vector elementwise kernel, called directly at lengths around its 16-lane step (the
// masked tail included), beside a float64 reference, on slices with guards on both sides.

var elemLengths = []int{0, 1, 7, 15, 16, 17, 31, 33, 100}

func TestExpShiftKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, im := range impls {
		if !im.available || im.vec == nil {
			continue
		}
		for _, n := range elemLengths {
			x, intact := guarded(n, 3)
			for i := range x {
				x[i] = 40 * (2*r.Float32() - 1)
			}
			specials := []float32{float32(math.Inf(-1)), -200, -103.5, 0, 88.5, 95, float32(math.Inf(1))}
			for i := 0; i < len(specials) && i < n; i++ {
				x[(i*5)%n] = specials[i]
			}
			const shift = 1.75
			in := slices.Clone(x)
			sum := im.vec.expShift(x, shift)
			if !intact() {
				t.Fatalf("%s n=%d: wrote outside x", im.name, n)
			}
			var want float64
			for i, v := range in {
				e := math.Exp(float64(v - shift)) // the difference is rounded to float32 first
				want += float64(float32(e))
				switch {
				case e > math.MaxFloat32:
					if !math.IsInf(float64(x[i]), 1) {
						t.Errorf("%s n=%d: exp(%v - %v) = %v, want +Inf", im.name, n, v, shift, x[i])
					}
				case e < 0x1p-126 && float64(x[i]) > 0x1p-126:
					t.Errorf("%s n=%d: exp(%v - %v) = %v, want below float32's normal range", im.name, n, v, shift, x[i])
				case e >= 0x1p-126 && !(math.Abs(float64(x[i])-e) <= 4e-7*e):
					t.Errorf("%s n=%d: exp(%v - %v) = %v, want %v", im.name, n, v, shift, x[i], e)
				}
			}
			if math.IsInf(want, 1) != math.IsInf(float64(sum), 1) ||
				!math.IsInf(want, 1) && math.Abs(float64(sum)-want) > 1e-6*want+1e-30 {
				t.Errorf("%s n=%d: sum %v, want %v", im.name, n, sum, want)
			}
		}
		x := []float32{float32(math.NaN()), 0}
		if im.vec.expShift(x, 0); !math.IsNaN(float64(x[0])) || x[1] != 1 {
			t.Errorf("%s: exp(NaN), exp(0) = %v, want NaN, 1", im.name, x)
		}
	}
}

func TestSwiGLUKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for _, im := range impls {
		if !im.available || im.vec == nil {
			continue
		}
		for _, n := range elemLengths {
			a, u := randSlice(r, n), randSlice(r, n)
			for i := range a {
				a[i] *= 12
			}
			if n > 3 {
				a[1], a[2] = -120, 120 // saturated gates
			}
			out, outOK := guarded(n, 1)
			sig, sigOK := guarded(n, 2)
			im.vec.swiGLU(out, sig, a, u)
			if !outOK() || !sigOK() {
				t.Fatalf("%s n=%d: wrote outside out or sig", im.name, n)
			}
			dout := randSlice(r, n)
			da, daOK := guarded(n, 3)
			du, duOK := guarded(n, 4)
			da0, du0 := randSlice(r, n), randSlice(r, n)
			copy(da, da0)
			copy(du, du0)
			im.vec.swiGLUBackward(da, du, dout, a, u, sig)
			if !daOK() || !duOK() {
				t.Fatalf("%s n=%d: backward wrote outside da or du", im.name, n)
			}
			for i := range n {
				x, uu, d := float64(a[i]), float64(u[i]), float64(dout[i])
				s := 1 / (1 + math.Exp(-x))
				near := func(what string, got float32, want, scale float64) {
					if math.Abs(float64(got)-want) > 1e-6*scale+1e-30 {
						t.Errorf("%s n=%d i=%d (a=%v): %s = %v, want %v", im.name, n, i, x, what, got, want)
					}
				}
				near("sigmoid", sig[i], s, s)
				near("out", out[i], x*s*uu, math.Abs(x*uu))
				near("du", du[i], float64(du0[i])+d*x*s, math.Abs(float64(du0[i]))+math.Abs(d*x))
				near("da", da[i], float64(da0[i])+d*uu*s*(1+x*(1-s)), math.Abs(float64(da0[i]))+math.Abs(d*uu)*(1+math.Abs(x)))
			}
		}
	}
}

// TestVecKernelsMatchTwins: the kernels without an exponential give their Go twins'
// results bit for bit (the same operations in the same order, sums in the same 16 lanes),
// and write nothing outside their outputs.
func TestVecKernelsMatchTwins(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	plain := &gemmImpl{}
	for _, im := range impls {
		if !im.available || im.vec == nil {
			continue
		}
		for _, n := range elemLengths {
			x, a, b, p := randSlice(r, n), randSlice(r, n), randSlice(r, n), randSlice(r, n)
			s := float32(1.0 / 3)
			type run struct {
				name string
				f    func(im *gemmImpl, out []float32) float32
			}
			for _, c := range []run{
				{"scaleMax", func(im *gemmImpl, out []float32) float32 { copy(out, x); return scaleMax(im, out, s) }},
				{"scaleBy", func(im *gemmImpl, out []float32) float32 { copy(out, x); scaleBy(im, out, s); return 0 }},
				{"axpyTo", func(im *gemmImpl, out []float32) float32 { copy(out, x); axpyTo(im, out, a, s); return 0 }},
				{"mulAdd", func(im *gemmImpl, out []float32) float32 { copy(out, x); mulAdd(im, out, a, b, s); return 0 }},
				{"softmaxGrad", func(im *gemmImpl, out []float32) float32 { copy(out, x); softmaxGrad(im, out, p, s, 0.7); return 0 }},
				{"dot3", func(im *gemmImpl, out []float32) float32 { copy(out, x); return dot3(im, a, b, p) }},
				{"dot2", func(im *gemmImpl, out []float32) float32 { copy(out, x); return dot2(im, a, b) }},
				{"sumSquares", func(im *gemmImpl, out []float32) float32 { copy(out, x); return sumSquares(im, a) }},
				{"normRow", func(im *gemmImpl, out []float32) float32 { normRow(im, out, a, b, s); return 0 }},
				{"normRowBackward", func(im *gemmImpl, out []float32) float32 {
					copy(out, x)
					normRowBackward(im, out, a, b, p, s, 0.7)
					return 0
				}},
				{"swiGLUBackward du", func(im *gemmImpl, out []float32) float32 {
					copy(out, x)
					swiGLUBackward(im, make([]float32, n), out, a, b, p, slices.Clone(x))
					return 0
				}},
				{"swiGLUBackward da", func(im *gemmImpl, out []float32) float32 {
					copy(out, x)
					swiGLUBackward(im, out, make([]float32, n), a, b, p, slices.Clone(x))
					return 0
				}},
			} {
				want := make([]float32, n)
				wantRet := c.f(plain, want)
				got, intact := guarded(n, 5)
				gotRet := c.f(im, got)
				if !intact() {
					t.Fatalf("%s %s n=%d: wrote outside its output", im.name, c.name, n)
				}
				if !slices.Equal(got, want) || gotRet != wantRet {
					t.Fatalf("%s %s n=%d: %v (%v), twin %v (%v)", im.name, c.name, n, got, gotRet, want, wantRet)
				}
			}
		}
	}
}

// TestAttention32MatchesFloat64: float32 attention, forward and backward, on the
// micro-kernel of every implementation, beside the float64 path (whose gradients
// TestAttention checks by finite differences): documents packed in runs and interleaved,
// sequences crossing query blocks and key panels, odd head dims, grouped heads, and
// gradients accumulated onto nonzero buffers.
func TestAttention32MatchesFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	for _, tc := range []struct {
		name           string
		B, T, H, KV, D int
		doc            func(b, t int) int32
	}{
		{"runs", 2, 67, 6, 2, 5, func(b, t int) int32 { return int32(b + t/20) }},
		{"interleaved", 2, 67, 4, 2, 3, func(b, t int) int32 { return int32((t / 5 % 3) * b) }},
		{"one document D64", 1, 130, 2, 1, 64, func(b, t int) int32 { return 0 }},
	} {
		B, T, H, KV, D, scale := tc.B, tc.T, tc.H, tc.KV, tc.D, 0.3
		q, k, v, dout := opRand(r, B*T*H*D), opRand(r, B*T*KV*D), opRand(r, B*T*KV*D), opRand(r, B*T*H*D)
		dq0, dk0, dv0 := opRand(r, len(q)), opRand(r, len(k)), opRand(r, len(v))
		doc := make([]int32, B*T)
		for i := range doc {
			doc[i] = tc.doc(i/T, i%T)
		}
		be64 := New[float64]()
		out, lse := make([]float64, len(q)), make([]float64, B*T*H)
		be64.attention(out, lse, q, k, v, doc, B, T, H, KV, D, scale)
		dq, dk, dv := slices.Clone(dq0), slices.Clone(dk0), slices.Clone(dv0)
		be64.attentionBackward(dq, dk, dv, dout, out, lse, q, k, v, doc, B, T, H, KV, D, scale)
		for _, im := range impls {
			if !im.available {
				continue
			}
			be := &Backend[float32]{gemm: im}
			what := tc.name + " " + im.name
			out32, lse32 := make([]float32, len(q)), make([]float32, B*T*H)
			q32, k32, v32 := to[float32](q), to[float32](k), to[float32](v)
			be.attention(out32, lse32, q32, k32, v32, doc, B, T, H, KV, D, float32(scale))
			closeTo(t, what+" out", out32, out, 1e-5)
			closeTo(t, what+" lse", lse32, lse, 1e-5)
			dq32, dk32, dv32 := to[float32](dq0), to[float32](dk0), to[float32](dv0)
			be.attentionBackward(dq32, dk32, dv32, to[float32](dout), out32, lse32, q32, k32, v32, doc, B, T, H, KV, D, float32(scale))
			closeTo(t, what+" dq", dq32, dq, 1e-4)
			closeTo(t, what+" dk", dk32, dk, 1e-4)
			closeTo(t, what+" dv", dv32, dv, 1e-4)
		}
	}
}

// TestRopeKernels: every vector RoPE row gives its Go twin's bits, forward and backward
// (sign -1), for half head dims around its 8-pair step and several heads, writes nothing
// outside the row, and is within float32 rounding of the rotation in float64.
func TestRopeKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	plain := &gemmImpl{}
	for _, im := range impls {
		if !im.available || im.vec == nil || im.vec.rope == nil {
			continue
		}
		for _, half := range []int{1, 3, 7, 8, 9, 15, 16, 17, 32, 33} {
			for _, heads := range []int{1, 3} {
				for _, sign := range []float32{1, -1} {
					cs, sn := make([]float32, half), make([]float32, half)
					for j := range cs {
						s, c := math.Sincos(7 * r.Float64())
						sn[j], cs[j] = float32(s), float32(c)
					}
					x := randSlice(r, heads*2*half)
					want := slices.Clone(x)
					ropeRow(plain, want, cs, sn, heads, sign)
					got, intact := guarded(len(x), 3)
					copy(got, x)
					ropeRow(im, got, cs, sn, heads, sign)
					if !intact() {
						t.Fatalf("%s half %d heads %d: wrote outside the row", im.name, half, heads)
					}
					if !slices.Equal(got, want) {
						t.Fatalf("%s half %d heads %d sign %v: %v, twin %v", im.name, half, heads, sign, got, want)
					}
					for i := 0; i < len(x); i += 2 {
						j := i / 2 % half
						c, s := float64(cs[j]), float64(sign)*float64(sn[j])
						a, b := float64(x[i]), float64(x[i+1])
						bound := 3e-7 * (math.Abs(a) + math.Abs(b))
						if math.Abs(float64(got[i])-(a*c-b*s)) > bound || math.Abs(float64(got[i+1])-(a*s+b*c)) > bound {
							t.Fatalf("%s half %d: pair %d is (%v, %v), float64 (%v, %v)", im.name, half, i/2, got[i], got[i+1], a*c-b*s, a*s+b*c)
						}
					}
				}
			}
		}
	}
}
