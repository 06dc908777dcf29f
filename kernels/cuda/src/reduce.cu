// The reductions of kernels.Backend that return host scalars, on the GPU: Dot, ColumnSums,
// SumSquares and MeanAbsDiff, the twins of kernels/cpu/buf_ops.go. Each runs in two
// launches: a *_parts kernel writes float64 partial sums into a scratch buffer, then
// sum_parts adds them, in order, into a small float64 buffer that the host reads back.
//
//   Dot:         dot_parts_f32 (ceil(n/kChunk) parts), then sum_parts with cols 1.
//   ColumnSums:  column_parts_f32 (ceil(rows/kRows)·cols parts), then sum_parts with cols
//                columns: sums[j].
//   SumSquares:  sum_squares_parts_f32 (one part per kernels.SumSquaresBlock), then
//                sum_parts with cols 1.
//   MeanAbsDiff: abs_diff_parts_f32 (ceil(n/kChunk) parts), then sum_parts with cols 1;
//                the host divides the sum by n (NaN for n = 0, with no launch).
//
// Deterministic: no atomics; every sum runs in a fixed order that depends on the sizes
// only (each kernel's comment gives it), so the same inputs give the same bits on any GPU
// and any run. SumSquares follows the contract's order exactly and so gives the CPU's
// bits; ColumnSums gives them when rows <= kRows; Dot and MeanAbsDiff sum in another order
// than the CPU's index order, which the conformance suite allows (float64 sums of float32
// values, within a few float64 ulps of the magnitude).
//
// Every float operand is float32 (F = float32, the trainer's type). A float64 variant
// would be the *_parts bodies instantiated for double under a _f64 name: the products and
// squares then round (__dmul_rn, as written), where from float32 they are exact.
//
// A launch with no elements is skipped by the caller (a grid of zero blocks is an error):
// Dot and SumSquares of nothing are 0, ColumnSums of no columns does nothing, and of no
// rows launches sum_parts alone with nparts 0, which writes zeros.
//
// The file includes no header (NVRTC compiles it without the CUDA headers), so its helpers
// are its own: each .cu file is a program of its own.

namespace reduce {

// kBlock is the block size of every kernel here; the order of blockSum depends on it, so a
// launch must use exactly this many threads.
constexpr int kBlock = 256;

// kChunk is how many elements one block of dot_parts_f32 and abs_diff_parts_f32 sums.
constexpr int kChunk = 32 * kBlock;

// kRows is how many rows one part of column_parts_f32 sums.
constexpr int kRows = 256;

// kSumSquaresBlock is kernels.SumSquaresBlock; kLanes the lanes its order sums in, and
// kTile the elements sum_squares_parts_f32 stages in shared memory at a time.
constexpr int kSumSquaresBlock = 1 << 16;
constexpr int kLanes = 8;
constexpr int kTile = 8 * kBlock;

// blockSum returns, in thread 0, the sum of v over the kBlock threads of the block: a tree
// in shared memory, thread i adding thread i+s's value for s = 128, 64, ..., 1. Every
// thread must call it.
__device__ double blockSum(double v) {
	__shared__ double sm[kBlock];
	sm[threadIdx.x] = v;
	__syncthreads();
	for (int s = kBlock / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sm[threadIdx.x] = __dadd_rn(sm[threadIdx.x], sm[threadIdx.x + s]);
		__syncthreads();
	}
	return sm[0];
}

} // namespace reduce

// dot_parts_f32 writes parts[b] = Σ a[i]·b[i] over block b's chunk [b·kChunk, b·kChunk+kChunk)
// ∩ [0, n), in float64: thread t sums elements t, t+kBlock, ... of the chunk in order
// (each product of two float32 values exact in float64), then blockSum.
//   parts: [ceil(n/kChunk)]  a, b: [n]
// Launch: grid (ceil(n/kChunk)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void dot_parts_f32(double* parts, const float* a, const float* b, long long n) {
	long long lo = (long long)blockIdx.x * reduce::kChunk, hi = min(lo + reduce::kChunk, n);
	double s = 0;
	for (long long i = lo + threadIdx.x; i < hi; i += reduce::kBlock)
		s = __dadd_rn(s, __dmul_rn((double)a[i], (double)b[i]));
	s = reduce::blockSum(s);
	if (threadIdx.x == 0)
		parts[blockIdx.x] = s;
}

// abs_diff_parts_f32 is dot_parts_f32 for MeanAbsDiff's sum: the terms are |a[i] - b[i]|,
// the difference taken in float64 (|a[i]| when b is null).
//   parts: [ceil(n/kChunk)]  a, b: [n]
// Launch: grid (ceil(n/kChunk)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void abs_diff_parts_f32(double* parts, const float* a, const float* b, long long n) {
	long long lo = (long long)blockIdx.x * reduce::kChunk, hi = min(lo + reduce::kChunk, n);
	double s = 0;
	for (long long i = lo + threadIdx.x; i < hi; i += reduce::kBlock) {
		double d = (double)a[i];
		if (b)
			d = __dsub_rn(d, (double)b[i]);
		s = __dadd_rn(s, fabs(d));
	}
	s = reduce::blockSum(s);
	if (threadIdx.x == 0)
		parts[blockIdx.x] = s;
}

// column_parts_f32 writes parts[q·cols + j] = Σ x[i, j] over the rows i of part q, [q·kRows,
// q·kRows+kRows) ∩ [0, rows), in row order, in float64. Thread q·cols + j of the grid
// takes (q, j), so a warp reads neighbouring columns of a row.
//   parts: [ceil(rows/kRows), cols]  x: [rows, cols]
// Launch: grid (ceil(ceil(rows/kRows)·cols/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void column_parts_f32(double* parts, const float* x, int rows, int cols) {
	long long id = (long long)blockIdx.x * reduce::kBlock + threadIdx.x;
	long long nparts = (rows + reduce::kRows - 1) / reduce::kRows;
	if (id >= nparts * cols)
		return;
	int q = (int)(id / cols), j = (int)(id % cols);
	int r1 = min(q * reduce::kRows + reduce::kRows, rows);
	double s = 0;
	for (int i = q * reduce::kRows; i < r1; i++)
		s = __dadd_rn(s, (double)x[(long long)i * cols + j]);
	parts[id] = s;
}

// sum_squares_parts_f32 writes parts[b] = Σ x[i]² over block b of kernels.SumSquaresBlock
// elements, in the contract's order: 8 lanes, lane l adding the squares of elements l,
// l+8, l+16, ... of the block one after another (each square rounded to float64 before it
// is added: exact from float32), then lanes 0..3 += 4..7, 0,1 += 2,3, 0 += 1. The block's
// threads load kTile elements at a time into shared memory, coalesced; threads 0..7 are
// the lanes and add the tile's squares in order. Absent elements past n are +0, which
// leaves a sum of squares (never -0) unchanged.
//   parts: [ceil(n/kernels.SumSquaresBlock)]  x: [n]
// Launch: grid (ceil(n/kernels.SumSquaresBlock)), block (kBlock), no dynamic shared memory
// (16 KiB static).
extern "C" __global__ void sum_squares_parts_f32(double* parts, const float* x, long long n) {
	__shared__ double sq[reduce::kTile];
	__shared__ double lane[reduce::kLanes];
	long long lo = (long long)blockIdx.x * reduce::kSumSquaresBlock;
	double s = 0;
	for (int t = 0; t < reduce::kSumSquaresBlock && lo + t < n; t += reduce::kTile) { // the same trips in every thread
		for (int i = threadIdx.x; i < reduce::kTile; i += reduce::kBlock) {
			long long at = lo + t + i;
			double v = at < n ? (double)x[at] : 0.0;
			sq[i] = __dmul_rn(v, v);
		}
		__syncthreads();
		if (threadIdx.x < reduce::kLanes)
			for (int i = threadIdx.x; i < reduce::kTile; i += reduce::kLanes)
				s = __dadd_rn(s, sq[i]);
		__syncthreads();
	}
	if (threadIdx.x < reduce::kLanes)
		lane[threadIdx.x] = s;
	__syncthreads();
	if (threadIdx.x == 0) {
		for (int w = reduce::kLanes / 2; w >= 1; w /= 2)
			for (int i = 0; i < w; i++)
				lane[i] = __dadd_rn(lane[i], lane[i + w]);
		parts[blockIdx.x] = lane[0];
	}
}

// sum_parts writes out[j] = Σ_q parts[q·cols + j] over q < nparts, starting from 0 and
// adding the parts one after another in q order (SumSquares' block sums in block order).
// Block j takes column j: its threads stage kBlock parts at a time in shared memory, then
// thread 0 adds them.
//   out: [cols]  parts: [nparts, cols]
// Launch: grid (cols), block (kBlock), no dynamic shared memory.
extern "C" __global__ void sum_parts(double* out, const double* parts, long long nparts, int cols) {
	__shared__ double stage[reduce::kBlock];
	int j = blockIdx.x;
	double s = 0;
	for (long long q0 = 0; q0 < nparts; q0 += reduce::kBlock) {
		long long q = q0 + threadIdx.x;
		if (q < nparts)
			stage[threadIdx.x] = parts[q * cols + j];
		__syncthreads();
		if (threadIdx.x == 0)
			for (int i = 0; i < reduce::kBlock && q0 + i < nparts; i++)
				s = __dadd_rn(s, stage[i]);
		__syncthreads();
	}
	if (threadIdx.x == 0)
		out[j] = s;
}
