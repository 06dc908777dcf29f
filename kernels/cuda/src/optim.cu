// The optimizer's update of kernels.Backend on the GPU: AdamW over spans with per-group
// coefficients, the twin of kernels/cpu/optim.go's adamWGo, bit for bit: every operation
// of kernels.AdamWCoeffs' update is rounded once, in its order, in the parameters' type
// (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn, __fsqrt_rn: the compiler may not fuse them
// into multiply-adds), so the conformance suite holds it exact.
//
// The host slices of an AdamW call cross as they lie in Go's memory (64-bit hosts): the
// spans ([]kernels.Span, three Go ints each) and the coefficients ([]kernels.AdamWCoeffs,
// nine float64s each) are uploaded byte for byte, the spans once when the optimizer cuts
// them, the coefficients every step.
//
// Deterministic: each element is updated by one thread, from its own values only.
//
// Compile without --use_fast_math and with --ftz=false (NVRTC's defaults): the second
// moment of a small gradient is subnormal, and the CPU keeps it.
//
// The file includes no header (NVRTC compiles it without the CUDA headers), so its helpers
// are its own: each .cu file is a program of its own.

namespace optim {

// kBlock is the block size of adamw_f32.
constexpr int kBlock = 256;

// Span is kernels.Span as Go lays it out: elements [lo, hi) of the flat buffers, updated
// with the coefficients of group.
struct Span {
	long long lo, hi, group;
};

// Coeffs is kernels.AdamWCoeffs as Go lays it out, field for field.
struct Coeffs {
	double b1, c1;   // β1 and 1-β1
	double b2, c2;   // β2 and 1-β2
	double decay;    // 1 - lr·wd
	double stepSize; // lr / (1-β1ᵗ)
	double bc2Sqrt;  // sqrt(1-β2ᵗ)
	double eps;
	double gScale; // gradient factor (the clipping factor), 1 for none
};

} // namespace optim

// adamw_f32 is AdamW for float32 parameters: for every element i of every span, with c =
// coeffs[span.group] and each coefficient converted to float32 once (round to nearest):
//
//	gr = g[i]·gScale
//	m[i] = m[i]·b1 + gr·c1;  v[i] = v[i]·b2 + (gr·gr)·c2
//	p[i] = p[i]·decay - stepSize·(m[i] / (sqrt(v[i])/bc2Sqrt + eps))
//
// one rounding per operation, left to right as written. Block s takes span s, its threads
// striding over the span's elements; elements outside every span are not touched. A
// float64 variant (adamw_f64, for float64 parameters; m and v stay float32) would be the
// same body in double with __dmul_rn, __dadd_rn, __dsub_rn, __ddiv_rn, __dsqrt_rn, m and v
// widened on reading and rounded to float32 on writing.
//   p, g, m, v: the flat buffers  spans: [len(spans)]  coeffs: [groups]
// Launch: grid (len(spans)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void adamw_f32(float* p, const float* g, float* m, float* v, const optim::Span* spans,
	const optim::Coeffs* coeffs) {
	optim::Span sp = spans[blockIdx.x];
	const optim::Coeffs& c = coeffs[sp.group];
	float gs = (float)c.gScale, b1 = (float)c.b1, c1 = (float)c.c1, b2 = (float)c.b2, c2 = (float)c.c2;
	float decay = (float)c.decay, stepSize = (float)c.stepSize, bc2s = (float)c.bc2Sqrt, eps = (float)c.eps;
	for (long long i = sp.lo + threadIdx.x; i < sp.hi; i += optim::kBlock) {
		float gr = __fmul_rn(g[i], gs);
		float mi = __fadd_rn(__fmul_rn(m[i], b1), __fmul_rn(gr, c1));
		float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(gr, gr), c2));
		m[i] = mi;
		v[i] = vi;
		float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2s), eps);
		p[i] = __fsub_rn(__fmul_rn(p[i], decay), __fmul_rn(stepSize, __fdiv_rn(mi, denom)));
	}
}
