//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// archImpls are the assembly GEMMs, best first. The blockings keep one kc×nr B panel in
// L1 and the mc×kc A block in L2 (Cascade Lake and later: 32–48 KiB L1d, 1–2 MiB L2).
func archImpls() []*gemmImpl {
	return []*gemmImpl{
		{
			name: "avx512", available: cpu.X86.HasAVX512F,
			mr: 14, nr: 32, mc: 14 * 8, kc: 256, nc: 3072,
			kernel: sgemmKernel14x32, kernelA: sgemmKernel14x32A, packRows: packA14, packRowsT: packA14T, packColsT: packB32T,
			packCols: packB32, vec: avx512Vec,
		},
		{
			name: "avx2", available: cpu.X86.HasAVX2 && cpu.X86.HasFMA,
			mr: 6, nr: 16, mc: 6 * 24, kc: 256, nc: 3072,
			kernel: sgemmKernel6x16,
		},
	}
}

// sgemmKernel14x32 is kernelGo(14, 32, ...) in AVX-512: 28 zmm accumulators, two zmm of
// B and one broadcast element of A per row and step, fused multiply-adds.
//
//go:noescape
func sgemmKernel14x32(k int, a, b, c []float32, ldc int, add bool)

// sgemmKernel14x32A is sgemmKernel14x32 reading A in place: the tile's 14 rows of an
// untransposed a at a[i*lda:], k elements each; the same sums in the same order.
//
//go:noescape
func sgemmKernel14x32A(k int, a []float32, lda int, b, c []float32, ldc int, add bool)

// sgemmKernel6x16 is kernelGo(6, 16, ...) in AVX2 with FMA: 12 ymm accumulators.
//
//go:noescape
func sgemmKernel6x16(k int, a, b, c []float32, ldc int, add bool)

// packA14 is packA's loop for up to 14 rows of an untransposed a, in AVX-512: each group
// of 16 columns is a 16×16 transpose in registers, zero rows past rows.
//
//go:noescape
func packA14(dst, a []float32, lda, groups, rows int)

// packA14T is packA's loop for up to 14 rows of a transposed a, in AVX-512: one masked
// load and store per column, zeros past rows.
//
//go:noescape
func packA14T(dst, a []float32, lda, kb, rows int)

// packB32T is packB's loop for 32 full columns of a transposed b, in AVX-512: two 16×16
// transposes in registers per 16 rows.
//
//go:noescape
func packB32T(dst, b []float32, ldb, groups int)
