// Elementwise, softmax cross-entropy and row-gather ops of kernels.Backend on the GPU:
// SwiGLU, SwiGLUBackward, CrossEntropy, CrossEntropyBackward, LossWeights, Scale, Axpy,
// GatherRows, GatherSum, ScatterRows and RowDots, the twins of
// kernels/cpu/ops_elementwise.go (LossWeights and ScatterRows: kernels/cpu/buf_ops.go).
//
// Every kernel is float32 (F = float32, the trainer's type). A float64 variant, should the
// gradient checks ever run on the GPU, would be the same bodies instantiated for double
// under a _f64 name, with exp and log in double.
//
// Deterministic: no atomics; every output element has one owning thread, and every sum runs
// in the fixed order its kernel's comment gives. Products and sums are rounded one by one
// (__fmul_rn, __fadd_rn: nothing fused) in the CPU's order, so the ops the conformance suite
// holds bit-exact (Scale, GatherRows, ScatterRows, LossWeights) are, and the rest differ
// from the CPU only by the exponential's rounding and the order of a row's sums.
//
// Flat lengths (n) are 64-bit, as a [N, V] logits matrix can pass 2³¹ elements; row widths
// and counts are ints, as the Backend's. An empty optional operand (w) is passed as a null
// pointer: test Len() == 0, not the address, since an empty view of an allocation has one.
//
// A launch with no rows or elements is the caller's to skip: a grid of no blocks is an
// error.
//
// The file includes no header (NVRTC compiles it without the CUDA headers), so it carries
// the few helpers it needs, in a namespace of its own.

namespace elem {

// kBlock is the block size of every kernel here; the order of blockMax and blockSum
// depends on it, so a launch must use exactly this many threads.
constexpr int kBlock = 256;

using herd::negInf;

// flatIndex is the flat index of the calling thread in a 1-D grid of kBlock-thread blocks.
__device__ __forceinline__ long long flatIndex() { return (long long)blockIdx.x * kBlock + threadIdx.x; }

// blockMax and blockSum are herd::blockReduce over this file's kBlock threads.
__device__ float blockMax(float v) { return herd::blockReduce<kBlock, true>(v); }
__device__ float blockSum(float v) { return herd::blockReduce<kBlock, false>(v); }

} // namespace elem

// swiglu_f32 is SwiGLU: sig[i] = 1/(1 + exp(-a[i])) and out[i] = (a[i]·sig[i])·u[i], in
// float32 as the CPU's vector kernel computes them.
//   out, sig, a, u: [n]
// Launch: grid (ceil(n/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void swiglu_f32(float* out, float* sig, const float* a, const float* u, long long n) {
	long long i = elem::flatIndex();
	if (i >= n)
		return;
	float x = a[i];
	float s = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x)));
	sig[i] = s;
	out[i] = __fmul_rn(__fmul_rn(x, s), u[i]);
}

// swiglu_backward_f32 is SwiGLUBackward, with x = a[i], s = sig[i], g = dout[i]:
//   du[i] += (g·x)·s,  da[i] += ((g·u[i])·s)·(1 + x·(1 - s))
// (silu'(x) = s·(1 + x·(1-s))), in the CPU's order.
//   da, du, dout, a, u, sig: [n]
// Launch: grid (ceil(n/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void swiglu_backward_f32(float* da, float* du, const float* dout, const float* a, const float* u,
                                               const float* sig, long long n) {
	long long i = elem::flatIndex();
	if (i >= n)
		return;
	float x = a[i], s = sig[i], g = dout[i];
	du[i] = __fadd_rn(du[i], __fmul_rn(__fmul_rn(g, x), s));
	float dsilu = __fadd_rn(1.0f, __fmul_rn(x, __fsub_rn(1.0f, s)));
	da[i] = __fadd_rn(da[i], __fmul_rn(__fmul_rn(__fmul_rn(g, u[i]), s), dsilu));
}

// cross_entropy_f32 is CrossEntropy. Block i takes row i: mx = max of the row (blockMax);
// sum = Σ exp(logits[i,j] - mx), thread t summing columns t, t+kBlock, ... in order, then
// blockSum; lse[i] = mx + log(sum), the log in float64 as on the CPU; loss[i] = lse[i] -
// logits[i, targets[i]].
//   loss, lse: [N]  logits: [N, v]  targets: [N]
// Launch: grid (N), block (kBlock), no dynamic shared memory.
extern "C" __global__ void cross_entropy_f32(float* loss, float* lse, const float* logits, const int* targets, int v) {
	using namespace elem;
	int i = blockIdx.x;
	const float* row = logits + (long long)i * v;
	float mx = negInf();
	for (int j = threadIdx.x; j < v; j += kBlock)
		mx = fmaxf(mx, row[j]);
	mx = blockMax(mx);
	float part = 0.0f;
	for (int j = threadIdx.x; j < v; j += kBlock)
		part = __fadd_rn(part, expf(__fsub_rn(row[j], mx)));
	float sum = blockSum(part);
	if (threadIdx.x == 0) {
		float l = __fadd_rn(mx, (float)log((double)sum));
		lse[i] = l;
		loss[i] = __fsub_rn(l, row[targets[i]]);
	}
}

// cross_entropy_backward_f32 is CrossEntropyBackward: for a row i with w[i] != 0,
// dlogits[i,j] += w[i]·exp(logits[i,j] - lse[i]), and then, at j = targets[i], -= w[i]
// (two roundings, in the CPU's order); rows with w[i] = 0 are not touched. Block i takes
// row i, one thread per column.
//   dlogits, logits: [N, v]  lse, w, targets: [N]
// Launch: grid (N), block (kBlock), no dynamic shared memory.
extern "C" __global__ void cross_entropy_backward_f32(float* dlogits, const float* logits, const float* lse,
                                                      const int* targets, const float* w, int v) {
	using namespace elem;
	int i = blockIdx.x;
	float wi = w[i];
	if (wi == 0.0f)
		return;
	long long at = (long long)i * v;
	float l = lse[i];
	int tg = targets[i];
	for (int j = threadIdx.x; j < v; j += kBlock) {
		float d = __fadd_rn(dlogits[at + j], __fmul_rn(wi, expf(__fsub_rn(logits[at + j], l))));
		if (j == tg)
			d = __fsub_rn(d, wi);
		dlogits[at + j] = d;
	}
}

// loss_weights_f32 is LossWeights: w[i] = float32(float64(scale)·float64(mask[i]) / tokens)
// when tokens > 0, else 0, the formula in float64 as the contract fixes it.
//   w, mask: [n]
// Launch: grid (ceil(n/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void loss_weights_f32(float* w, const float* mask, long long n, float scale, double tokens) {
	long long i = elem::flatIndex();
	if (i >= n)
		return;
	w[i] = tokens > 0.0 ? (float)__ddiv_rn(__dmul_rn((double)scale, (double)mask[i]), tokens) : 0.0f;
}

// scale_f32 is Scale: x[i] = x[i]·s, in place.
// Launch: grid (ceil(n/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void scale_f32(float* x, long long n, float s) {
	long long i = elem::flatIndex();
	if (i < n)
		x[i] = __fmul_rn(x[i], s);
}

// axpy_f32 is Axpy: y[i] += a·x[i], the product and the sum each rounded.
// Launch: grid (ceil(n/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void axpy_f32(float* y, const float* x, long long n, float a) {
	long long i = elem::flatIndex();
	if (i < n)
		y[i] = __fadd_rn(y[i], __fmul_rn(a, x[i]));
}

// gather_rows_f32 is GatherRows: dst[i,:] = w[i]·src[idx[i],:], or a copy when w is null.
// Block i takes row i.
//   dst: [rows, c]  src: [·, c]  idx: [rows]  w: [rows] or null
// Launch: grid (rows), block (kBlock), no dynamic shared memory.
extern "C" __global__ void gather_rows_f32(float* dst, const float* src, const int* idx, const float* w, int c) {
	using namespace elem;
	int i = blockIdx.x;
	const float* s = src + (long long)idx[i] * c;
	float* o = dst + (long long)i * c;
	for (int j = threadIdx.x; j < c; j += kBlock)
		o[j] = w ? __fmul_rn(w[i], s[j]) : s[j];
}

// gather_sum_f32 is GatherSum: dst[i,:] += Σⱼ w[i·k+j]·src[idx[i·k+j],:] over j < k (w null:
// weight 1), each product added to dst in turn for j = 0, 1, ..., k-1, as on the CPU.
// Block i takes row i, one thread per column.
//   dst: [rows, c]  src: [·, c]  idx: [rows·k]  w: [rows·k] or null
// Launch: grid (rows), block (kBlock), no dynamic shared memory.
extern "C" __global__ void gather_sum_f32(float* dst, const float* src, const int* idx, const float* w, int k, int c) {
	using namespace elem;
	int i = blockIdx.x;
	float* o = dst + (long long)i * c;
	for (int p = threadIdx.x; p < c; p += kBlock) {
		float acc = o[p];
		for (int j = i * k; j < i * k + k; j++) {
			float x = src[(long long)idx[j] * c + p];
			acc = __fadd_rn(acc, w ? __fmul_rn(w[j], x) : x);
		}
		o[p] = acc;
	}
}

// scatter_rows_f32 is ScatterRows: dst[idx[i],:] = src[i,:]; the idx[i] are distinct, so
// block i alone writes its row.
//   src: [rows, c]  dst: [·, c]  idx: [rows]
// Launch: grid (rows), block (kBlock), no dynamic shared memory.
extern "C" __global__ void scatter_rows_f32(float* dst, const float* src, const int* idx, int c) {
	using namespace elem;
	int i = blockIdx.x;
	float* o = dst + (long long)idx[i] * c;
	const float* s = src + (long long)i * c;
	for (int j = threadIdx.x; j < c; j += kBlock)
		o[j] = s[j];
}

// row_dots_f32 is RowDots: out[i] = a[idx[i],:]·b[i,:]. Block i takes row i: thread t sums
// the products of columns t, t+kBlock, ... in order, then blockSum adds the threads' sums.
//   out: [rows]  a: [·, c]  b: [rows, c]  idx: [rows]
// Launch: grid (rows), block (kBlock), no dynamic shared memory.
extern "C" __global__ void row_dots_f32(float* out, const float* a, const float* b, const int* idx, int c) {
	using namespace elem;
	int i = blockIdx.x;
	const float* ar = a + (long long)idx[i] * c;
	const float* br = b + (long long)i * c;
	float part = 0.0f;
	for (int j = threadIdx.x; j < c; j += kBlock)
		part = __fadd_rn(part, __fmul_rn(ar[j], br[j]));
	float s = blockSum(part);
	if (threadIdx.x == 0)
		out[i] = s;
}
