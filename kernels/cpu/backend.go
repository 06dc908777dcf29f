// Package cpu implements kernels.Backend on the CPU, parallel over the machine's cores.
// Every operation has a plain-Go generic path that is the reference; float32 GEMM also has
// assembly fast paths chosen at start from the CPU's features (see gemm.go).
package cpu

import "github.com/herdml/herd/kernels"

// Backend runs kernels on the CPU for element type F.
type Backend[F kernels.Float] struct {
	gemm *gemmImpl // float32 GEMM implementation; nil means the one chosen at start
}

// New returns a CPU backend that uses the GEMM implementation chosen at start: the best
// the CPU supports, or the one named by HERD_KERNELS.
func New[F kernels.Float]() *Backend[F] { return &Backend[F]{gemm: active} }

// Name says which implementation runs: "cpu/avx512", "cpu/avx2" or "cpu/go". Only
// float32 has assembly paths; other element types always run the plain-Go reference.
func (be *Backend[F]) Name() string {
	var zero F
	if _, ok := any(zero).(float32); ok {
		return "cpu/" + be.impl().name
	}
	return "cpu/" + goImpl.name
}

func (be *Backend[F]) impl() *gemmImpl {
	if be.gemm == nil {
		return active
	}
	return be.gemm
}

// matMul is kernels.Backend's MatMul on the buffers' slices. float32 runs the blocked,
// packed GEMM of the chosen implementation; other element types (float64 for the gradient
// checks) run refMatMul.
func (be *Backend[F]) matMul(c, a, b []F, m, k, n int, transA, transB, accumulate bool) {
	if c32, ok := any(c).([]float32); ok {
		be.impl().matMul(c32, any(a).([]float32), any(b).([]float32), m, k, n, transA, transB, accumulate)
		return
	}
	refMatMul(c, a, b, m, k, n, transA, transB, accumulate)
}

// matMulCodes is kernels.Backend's MatMulCodes on the buffers' slices. float32 decodes b
// while packing it; other element types decode b whole and run refMatMul.
func (be *Backend[F]) matMulCodes(c, a []F, b []uint8, f kernels.FP8, scaleInv float32, m, k, n int, transA, accumulate bool) {
	tab := fp8Table(f)
	if c32, ok := any(c).([]float32); ok {
		be.impl().gemm(c32, any(a).([]float32), operandB{codes: b, tab: tab, scaleInv: scaleInv}, m, k, n, transA, false, accumulate)
		return
	}
	v := make([]float32, k*n)
	decodeRows(v, n, b, n, k, n, scaleInv, tab)
	bv := make([]F, k*n)
	for i, x := range v {
		bv[i] = F(x)
	}
	refMatMul(c, a, bv, m, k, n, transA, false, accumulate)
}

// refMatMul is the plain triple loop, the reference every fast path is checked against.
// Each output element is one sum over p in increasing order, computed by one goroutine,
// so the result does not depend on the thread count.
func refMatMul[F kernels.Float](c, a, b []F, m, k, n int, transA, transB, accumulate bool) {
	parallelFor(m, max(1, (1<<14)/max(1, n*k)), refGEMM[F]{c, a, b, m, k, n, transA, transB, accumulate})
}

type refGEMM[F kernels.Float] struct {
	c, a, b                    []F
	m, k, n                    int
	transA, transB, accumulate bool
}

func (t *refGEMM[F]) run(lo, hi int) {
	m, k, n := t.m, t.k, t.n
	for i := lo; i < hi; i++ {
		for j := 0; j < n; j++ {
			var s F
			for p := 0; p < k; p++ {
				av := t.a[i*k+p]
				if t.transA {
					av = t.a[p*m+i]
				}
				bv := t.b[p*n+j]
				if t.transB {
					bv = t.b[j*k+p]
				}
				s += av * bv
			}
			if t.accumulate {
				t.c[i*n+j] += s
			} else {
				t.c[i*n+j] = s
			}
		}
	}
}

var _ kernels.Backend[float32] = (*Backend[float32])(nil)
