// Package cpu implements kernels.Backend on the CPU, parallel over the machine's cores.
// Every operation has a plain-Go generic path that is the reference; float32 GEMM also has
// assembly fast paths chosen at start from the CPU's features.
package cpu

import "github.com/herdml/herd/kernels"

// Backend runs kernels on the CPU for element type F.
type Backend[F kernels.Float] struct{}

// New returns a CPU backend.
func New[F kernels.Float]() *Backend[F] { return &Backend[F]{} }

// Name says which implementation runs.
func (*Backend[F]) Name() string { return "cpu/go" }

// MatMul: see kernels.Backend. Plain triple loop; the reference.
func (*Backend[F]) MatMul(c, a, b []F, m, k, n int, transA, transB, accumulate bool) {
	parallelFor(m, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			for j := 0; j < n; j++ {
				var s F
				for p := 0; p < k; p++ {
					av := a[i*k+p]
					if transA {
						av = a[p*m+i]
					}
					bv := b[p*n+j]
					if transB {
						bv = b[j*k+p]
					}
					s += av * bv
				}
				if accumulate {
					c[i*n+j] += s
				} else {
					c[i*n+j] = s
				}
			}
		}
	})
}

var _ kernels.Backend[float32] = (*Backend[float32])(nil)
