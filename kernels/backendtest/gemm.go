package backendtest

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// gemmShapes are the GEMM shapes (M, K, N): tiny, odd, wider than a vector, larger than
// a kernel's register block, and empty in each dimension (K = 0 writes zeros).
var gemmShapes = [][3]int{
	{1, 1, 1}, {3, 5, 7}, {17, 33, 19}, {64, 48, 80}, {5, 130, 3}, {70, 41, 37},
	{0, 5, 3}, {4, 0, 3}, {4, 5, 0},
}

// refMatMul is c (+)= op(a)·op(b) in float64, and the magnitude Σ|a||b| (+ |c|) of each
// element.
func refMatMul(c, a, b []float64, m, k, n int, transA, transB, accumulate bool) (want, mag []float64) {
	want, mag = make([]float64, m*n), make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s, g float64
			for p := range k {
				av, bv := a[i*k+p], b[p*n+j]
				if transA {
					av = a[p*m+i]
				}
				if transB {
					bv = b[j*k+p]
				}
				s += av * bv
				g += math.Abs(av * bv)
			}
			if accumulate {
				s += c[i*n+j]
				g += math.Abs(c[i*n+j])
			}
			want[i*n+j], mag[i*n+j] = s, g
		}
	}
	return want, mag
}

func checkMatMul[F kernels.Float](e *env[F]) {
	for _, s := range gemmShapes {
		m, k, n := s[0], s[1], s[2]
		for _, transA := range []bool{false, true} {
			for _, transB := range []bool{false, true} {
				for _, acc := range []bool{false, true} {
					e.begin("M=%d K=%d N=%d transA=%v transB=%v accumulate=%v", m, k, n, transA, transB, acc)
					a, b, c := uniform(e, m*k, -1, 1), uniform(e, k*n, -1, 1), uniform(e, m*n, -1, 1)
					matMulCase(e, c, a, b, m, k, n, transA, transB, acc)
				}
			}
		}
	}
	// A NaN in a row of a makes that row of c NaN; an Inf makes the row infinite (or NaN
	// where b's entry is zero).
	e.begin("NaN and Inf in a")
	m, k, n := 6, 20, 9
	a, b, c := uniform(e, m*k, -1, 1), uniform(e, k*n, -1, 1), make([]F, m*n)
	a[1*k+3], a[4*k+k-1] = F(math.NaN()), F(math.Inf(1))
	matMulCase(e, c, a, b, m, k, n, false, false, false)
}

func matMulCase[F kernels.Float](e *env[F], c, a, b []F, m, k, n int, transA, transB, acc bool) {
	e.r.Helper()
	cb, cb2 := out(e, "c", c), out(e, "c (again)", c)
	ab, bb := in(e, "a", a), in(e, "b", b)
	e.be.MatMul(cb, ab, bb, m, k, n, transA, transB, acc)
	e.be.MatMul(cb2, ab, bb, m, k, n, transA, transB, acc)
	sameRuns(e, "c", cb, cb2)
	want, mag := refMatMul(to64(c), to64(a), to64(b), m, k, n, transA, transB, acc)
	near(e, "c", get(e, cb), want, mag, e.tol(k))
	e.done()
}

func checkMatMulCodes[F kernels.Float](e *env[F]) {
	for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
		for _, s := range gemmShapes {
			m, k, n := s[0], s[1], s[2]
			for _, transA := range []bool{false, true} {
				for _, acc := range []bool{false, true} {
					e.begin("%v M=%d K=%d N=%d transA=%v accumulate=%v", fp8Name(f), m, k, n, transA, acc)
					matMulCodesCase(e, f, m, k, n, transA, acc)
				}
			}
		}
	}
}

// matMulCodesCase checks MatMulCodes against the reference on the decoded b, and bit
// for bit against MatMul on the decoded b, as its contract says.
func matMulCodesCase[F kernels.Float](e *env[F], f kernels.FP8, m, k, n int, transA, acc bool) {
	e.r.Helper()
	const scaleInv = float32(0.0123)
	a, c := uniform(e, m*k, -1, 1), uniform(e, m*n, -1, 1)
	codes := finiteCodes(e, f, k*n)
	dec := make([]F, k*n)
	for i, x := range codes {
		dec[i] = F(float32(fp8Value(f, x)) * scaleInv) // rounded to float32 once
	}
	cb, cm := out(e, "c", c), out(e, "c (MatMul)", c)
	ab := in(e, "a", a)
	e.be.MatMulCodes(cb, ab, in(e, "b", codes), f, scaleInv, m, k, n, transA, acc)
	e.be.MatMul(cm, ab, in(e, "decoded b", dec), m, k, n, transA, false, acc)
	got := get(e, cb)
	want, mag := refMatMul(to64(c), to64(a), to64(dec), m, k, n, transA, false, acc)
	near(e, "c", got, want, mag, e.tol(k))
	same(e, "c against MatMul on the decoded b", got, get(e, cm))
	e.done()
}

// finiteCodes returns n random codes of format f that stand for finite values.
func finiteCodes[F kernels.Float](e *env[F], f kernels.FP8, n int) []uint8 {
	s := make([]uint8, n)
	for i := range s {
		for {
			s[i] = uint8(e.rng.IntN(256))
			if v := fp8Value(f, s[i]); !math.IsNaN(v) && !math.IsInf(v, 0) {
				break
			}
		}
	}
	return s
}
