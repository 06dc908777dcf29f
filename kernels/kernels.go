// Package kernels defines the numeric operations the trainer needs, behind one Backend
// interface, so that the model code is written once and runs on any implementation:
// kernels/cpu (Go, with assembly fast paths), later kernels/cuda.
//
// Every operation is generic over the element type. The trainer runs in float32; the
// gradient checks run the very same model code in float64, where finite differences are
// accurate enough to check every hand-written backward pass.
//
// Conventions: all matrices are dense and row-major; shapes are given in the doc comment of
// each operation with this legend: M, K, N for GEMM dimensions.
// Backward operations accumulate (+=) into gradient buffers, as in llm.c, so that a
// parameter used in several places sums its contributions.
//
// Results must be deterministic: the same inputs give bit-identical outputs on every run,
// whatever the number of threads, so that training runs are reproducible.
package kernels

// Float is the element type of a backend: float32 for training, float64 for checks.
type Float interface{ ~float32 | ~float64 }

// Backend is the set of operations the trainer needs.
type Backend[F Float] interface {
	// Name identifies the implementation, e.g. "cpu/avx512" or "cpu/go".
	Name() string

	// MatMul computes c = op(a)·op(b), or c += op(a)·op(b) when accumulate is set.
	//   c: [M, N]
	//   a: [M, K], or [K, M] when transA (op(a) = aᵀ)
	//   b: [K, N], or [N, K] when transB (op(b) = bᵀ)
	MatMul(c, a, b []F, m, k, n int, transA, transB, accumulate bool)
}
