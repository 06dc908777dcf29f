// Row-wise ops of kernels.Backend on the GPU: Embedding, EmbeddingBackward, RMSNorm,
// RMSNormBackward, RoPE and RoPEBackward, the twins of kernels/cpu/ops_rows.go.
//
// Every kernel is float32 (F = float32, the trainer's type). A float64 variant, should
// the gradient checks ever run on the GPU, would be the same bodies instantiated for
// double under a _f64 name, with the accurate double math functions.
//
// Deterministic: no atomics. A row's reduction runs in a block of exactly kBlock threads in
// a fixed order (blockSum), and a reduction across rows (the gradients of the embedding
// table and of the gain) is one thread per column adding the rows in row order, as the
// CPU does, so repeated token ids add their rows in a fixed order.
//
// Sizes are ints, as the Backend's; element offsets are 64-bit, since N·C can pass 2³¹.
//
// A launch with no rows or elements is the caller's to skip: a grid of no blocks is an
// error.
//
// The file includes no header (NVRTC compiles it without the CUDA headers), so it carries
// the few helpers it needs, in a namespace of its own.

namespace rows {

// kBlock is the block size of every kernel here; blockSum's order depends on it, so a
// launch must use exactly this many threads.
constexpr int kBlock = 256;

// blockSum is herd::blockReduce's sum over this file's kBlock threads.
__device__ float blockSum(float v) { return herd::blockReduce<kBlock, false>(v); }

} // namespace rows

// embedding_f32 is Embedding: out[i,:] = scale·table[ids[i],:], rows with ids[i] < 0 left
// untouched. The product is rounded once, as the contract's bit-exact tolerance needs.
//   out: [n, c]  table: [V, c]  ids: [n]
// Launch: grid (n), block (kBlock), no dynamic shared memory; block i writes row i.
extern "C" __global__ void embedding_f32(float* out, const float* table, const int* ids, int c, float scale) {
	int i = blockIdx.x;
	int id = ids[i];
	if (id < 0)
		return;
	const float* src = table + (long long)id * c;
	float* dst = out + (long long)i * c;
	for (int j = threadIdx.x; j < c; j += rows::kBlock)
		dst[j] = __fmul_rn(scale, src[j]);
}

// embedding_backward_f32 is EmbeddingBackward: dtable[ids[i],:] += scale·dout[i,:] for
// ids[i] >= 0. A token id can repeat, so each thread owns one column j and adds the rows
// i = 0, 1, ..., n-1 into dtable[·, j] in that order: the CPU's order, product and sum
// each rounded once.
//   dtable: [V, c]  dout: [n, c]  ids: [n]
// Launch: grid (ceil(c/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void embedding_backward_f32(float* dtable, const float* dout, const int* ids, int n, int c,
                                                  float scale) {
	int j = blockIdx.x * rows::kBlock + threadIdx.x;
	if (j >= c)
		return;
	for (int i = 0; i < n; i++) {
		int id = ids[i];
		if (id < 0)
			continue;
		float* d = dtable + (long long)id * c + j;
		*d = __fadd_rn(*d, __fmul_rn(scale, dout[(long long)i * c + j]));
	}
}

// rmsnorm_f32 is RMSNorm: rstd[i] = 1/sqrt(mean(x[i,:]²) + eps), out[i,:] = x[i,:]·rstd[i]·g.
// Block i takes row i: thread t sums the squares of columns t, t+kBlock, ... in order, then
// blockSum adds the threads' sums; the mean is that sum / c in float32 and, as on the CPU,
// the reciprocal square root is taken in float64 and rounded to float32. out is
// (x·rstd)·g, each product rounded.
//   out, x: [n, c]  rstd: [n]  g: [c]
// Launch: grid (n), block (kBlock), no dynamic shared memory.
extern "C" __global__ void rmsnorm_f32(float* out, float* rstd, const float* x, const float* g, int c, double eps) {
	using namespace rows;
	int i = blockIdx.x;
	const float* xi = x + (long long)i * c;
	float ss = 0.0f;
	for (int j = threadIdx.x; j < c; j += kBlock)
		ss = __fadd_rn(ss, __fmul_rn(xi[j], xi[j]));
	float mean = __fdiv_rn(blockSum(ss), (float)c);
	float r = (float)(1.0 / sqrt((double)mean + eps));
	if (threadIdx.x == 0)
		rstd[i] = r;
	float* oi = out + (long long)i * c;
	for (int j = threadIdx.x; j < c; j += kBlock)
		oi[j] = __fmul_rn(__fmul_rn(xi[j], r), g[j]);
}

// rmsnorm_backward_dx_f32 is RMSNormBackward's input gradient. With r = rstd[i] and
// dot = Σⱼ dout[i,j]·g[j]·x[i,j]: corr = r·r·dot/c and dx[i,j] += r·(dout[i,j]·g[j] -
// x[i,j]·corr), as kernels/cpu's rmsNormBackward. Block i takes row i; dot is summed as
// rmsnorm_f32 sums its squares (per thread in column order, then blockSum).
//   dx, dout, x: [n, c]  g: [c]  rstd: [n]
// Launch: grid (n), block (kBlock), no dynamic shared memory. RMSNormBackward is this
// kernel and rmsnorm_backward_dg_f32, in either order (they write different buffers).
extern "C" __global__ void rmsnorm_backward_dx_f32(float* dx, const float* dout, const float* x, const float* g,
                                                   const float* rstd, int c) {
	using namespace rows;
	int i = blockIdx.x;
	long long at = (long long)i * c;
	float part = 0.0f;
	for (int j = threadIdx.x; j < c; j += kBlock)
		part = __fadd_rn(part, __fmul_rn(__fmul_rn(dout[at + j], g[j]), x[at + j]));
	float dot = blockSum(part);
	float r = rstd[i];
	float corr = __fdiv_rn(__fmul_rn(__fmul_rn(r, r), dot), (float)c);
	for (int j = threadIdx.x; j < c; j += kBlock) {
		float t = __fsub_rn(__fmul_rn(dout[at + j], g[j]), __fmul_rn(x[at + j], corr));
		dx[at + j] = __fadd_rn(dx[at + j], __fmul_rn(r, t));
	}
}

// rmsnorm_backward_dg_f32 is RMSNormBackward's gain gradient: dg[j] += Σᵢ dout[i,j]·x[i,j]·
// rstd[i]. Each thread owns column j and adds the rows into dg[j] one by one in row order
// (the CPU's order and roundings: ((dout·x)·rstd), then the add).
//   dg: [c]  dout, x: [n, c]  rstd: [n]
// Launch: grid (ceil(c/kBlock)), block (kBlock), no dynamic shared memory. Its
// parallelism is c threads; a faster form would sum fixed ranges of rows per block into a
// scratch buffer and add those partial sums in range order.
extern "C" __global__ void rmsnorm_backward_dg_f32(float* dg, const float* dout, const float* x, const float* rstd,
                                                   int n, int c) {
	int j = blockIdx.x * rows::kBlock + threadIdx.x;
	if (j >= c)
		return;
	float acc = dg[j];
	for (int i = 0; i < n; i++) {
		long long at = (long long)i * c + j;
		acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(dout[at], x[at]), rstd[i]));
	}
	dg[j] = acc;
}

// rope_f32 is RoPE with sign = 1 and RoPEBackward with sign = -1 (the inverse rotation is
// the rotation by the negative angle): for row i, head h and pair j < d/2, with p = pos[i],
// cs = cos[p, j] and sn = sign·sin[p, j], in place:
//   x'[2j] = x[2j]·cs - x[2j+1]·sn,  x'[2j+1] = x[2j]·sn + x[2j+1]·cs
// each product and sum rounded once, as the CPU's twin computes. One thread per pair.
//   x: [n, heads·d]  pos: [n]  cos, sin: [maxPos, d/2]
// Launch: grid (ceil(n·heads·(d/2) / kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void rope_f32(float* x, const int* pos, const float* cos, const float* sin, int n, int heads,
                                    int d, float sign) {
	int half = d / 2;
	long long k = (long long)blockIdx.x * rows::kBlock + threadIdx.x;
	if (k >= (long long)n * heads * half)
		return;
	int j = (int)(k % half);
	long long row = k / half / heads; // the pair's row i; k / half is the (row, head) pair
	long long p = pos[row];
	float cs = cos[p * half + j], sn = __fmul_rn(sign, sin[p * half + j]);
	float* xp = x + (k / half) * d + 2 * j;
	float a = xp[0], b = xp[1];
	xp[0] = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
	xp[1] = __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs));
}
