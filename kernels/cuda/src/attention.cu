// Causal, document-masked grouped-query attention of kernels.Backend on the GPU:
// Attention and AttentionBackward, the twins of kernels/cpu/ops_attention.go in their
// simplest form, correctness first: one block per query row and head (forward, dq) or per
// key row and key/value head (dk, dv), the row's logits in shared memory. The forward keeps
// only each row's logsumexp; the backward recomputes the probabilities from it.
//
// Legend: B sequences of T positions, H query heads, KV key/value heads, D head dim,
// G = H/KV query heads per key/value head. Row r = b·T + t of q is q[r·H·D:], head hh at
// offset hh·D; k and v likewise with KV heads; query head hh reads key/value head hh/G.
// Query t sees key s when s <= t and doc[b·T+s] == doc[b·T+t].
//
// Every kernel is float32 (F = float32, the trainer's type). A float64 variant, should the
// gradient checks ever run on the GPU, would be the same bodies instantiated for double
// under a _f64 name, with exp and log in double.
//
// Deterministic: no atomics. Every dot product of two D-vectors is headDot's (one fused
// multiply-add per term, in index order), so the forward and both backward kernels compute
// the same logit, probability and δ for a (query, key) pair bit for bit; every other sum
// runs in a fixed order, given in each kernel's comment.
//
// A launch with no rows or elements is the caller's to skip: a grid of no blocks is an
// error.
//
// The file includes no header (NVRTC compiles it without the CUDA headers), so it carries
// the few helpers it needs, in a namespace of its own.

namespace attn {

// kBlock is the block size of every kernel here; the order of blockMax and blockSum
// depends on it, so a launch must use exactly this many threads.
constexpr int kBlock = 128;

using herd::negInf;

// headDot returns Σ a[i]·b[i] over i < d, one fused multiply-add per term in index order.
__device__ __forceinline__ float headDot(const float* a, const float* b, int d) {
	float s = 0.0f;
	for (int i = 0; i < d; i++)
		s = __fmaf_rn(a[i], b[i], s);
	return s;
}

// blockMax and blockSum are herd::blockReduce over this file's kBlock threads.
__device__ float blockMax(float v) { return herd::blockReduce<kBlock, true>(v); }
__device__ float blockSum(float v) { return herd::blockReduce<kBlock, false>(v); }

// dscore is the gradient of the logit of one visible (query, key) pair, given the
// query's logsumexp lse and δ = dout·out of its row: p = exp(scale·q·k - lse), then
// scale·p·(dout·v - δ), as kernels/cpu's softmaxGrad rounds it. It writes p too.
__device__ __forceinline__ float dscore(float* p, const float* qr, const float* kr, const float* vr,
                                        const float* dor, float lse, float delta, int d, float scale) {
	float pv = expf(__fsub_rn(__fmul_rn(scale, headDot(qr, kr, d)), lse));
	*p = pv;
	return __fmul_rn(__fmul_rn(scale, pv), __fsub_rn(headDot(dor, vr, d), delta));
}

} // namespace attn

// attention_f32 is Attention. Block (r, hh) takes query row r = b·T + t and head hh:
//   1. logit[s] = scale·(q·k_s) (headDot) for the visible keys s <= t, -Inf for the others,
//      into shared memory; mx = their max (blockMax);
//   2. e[s] = exp(logit[s] - mx); sum = Σ e (thread j sums keys j, j+kBlock, ... in order,
//      then blockSum); lse[r, hh] = mx + log(sum), the log in float64 as on the CPU;
//   3. p[s] = e[s]·(1/sum), and out[r, hh, i] = Σ_s p[s]·v_s[i] over s = 0..t in order
//      (masked keys add p = 0), one thread per column i.
//   out, q: [B·T, H·D]  k, v: [B·T, KV·D]  lse: [B·T, H]  doc: [B·T]
// Launch: grid (B·T, H), block (kBlock), dynamic shared memory T floats. Past the default
// 48 KiB a block (T above about 12000, with the reductions' few hundred bytes of static
// shared memory), raise the kernel's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES first.
extern "C" __global__ void attention_f32(float* out, float* lse, const float* q, const float* k, const float* v,
                                         const int* doc, int t, int h, int kv, int d, float scale) {
	using namespace attn;
	extern __shared__ float p[]; // [t]: logits, then probabilities
	int r = blockIdx.x, hh = blockIdx.y;
	int ti = r % t, kh = hh / (h / kv);
	long long base = r - ti; // row of position 0 of the sequence
	const float* qr = q + ((long long)r * h + hh) * d;
	int dr = doc[r];
	float mx = negInf();
	for (int s = threadIdx.x; s <= ti; s += kBlock) {
		float l = negInf();
		if (doc[base + s] == dr)
			l = __fmul_rn(scale, headDot(qr, k + ((base + s) * kv + kh) * d, d));
		p[s] = l;
		mx = fmaxf(mx, l);
	}
	mx = blockMax(mx);
	float part = 0.0f;
	for (int s = threadIdx.x; s <= ti; s += kBlock) {
		float e = expf(__fsub_rn(p[s], mx));
		p[s] = e;
		part = __fadd_rn(part, e);
	}
	float sum = blockSum(part);
	if (threadIdx.x == 0)
		lse[(long long)r * h + hh] = __fadd_rn(mx, (float)log((double)sum));
	float inv = __frcp_rn(sum);
	for (int s = threadIdx.x; s <= ti; s += kBlock)
		p[s] = __fmul_rn(p[s], inv);
	__syncthreads();
	float* orow = out + ((long long)r * h + hh) * d;
	for (int i = threadIdx.x; i < d; i += kBlock) {
		float acc = 0.0f;
		for (int s = 0; s <= ti; s++)
			acc = __fmaf_rn(p[s], v[((base + s) * kv + kh) * d + i], acc);
		orow[i] = acc;
	}
}

// attention_backward_dq_f32 is AttentionBackward's query gradient. Block (r, hh) takes
// query row r = b·T + t and head hh, with δ = dout·out of the row (headDot) and ds[s] =
// scale·p_s·(dout·v_s - δ) for each visible key s <= t, 0 for the others (dscore, into
// shared memory); then dq[r, hh, i] += Σ_s ds[s]·k_s[i], summed over s = 0..t in order,
// then added, one thread per column i.
//   dq, dout, out, q: [B·T, H·D]  k, v: [B·T, KV·D]  lse: [B·T, H]  doc: [B·T]
// Launch: grid (B·T, H), block (kBlock), dynamic shared memory T floats (above 12288
// positions, more than the default 48 KiB: see attention_f32). AttentionBackward is this
// kernel and attention_backward_dkv_f32, in either order (they write different buffers).
extern "C" __global__ void attention_backward_dq_f32(float* dq, const float* dout, const float* out, const float* lse,
                                                     const float* q, const float* k, const float* v, const int* doc,
                                                     int t, int h, int kv, int d, float scale) {
	using namespace attn;
	extern __shared__ float ds[]; // [t]
	int r = blockIdx.x, hh = blockIdx.y;
	int ti = r % t, kh = hh / (h / kv);
	long long base = r - ti;
	long long at = ((long long)r * h + hh) * d;
	float delta = headDot(dout + at, out + at, d);
	float l = lse[(long long)r * h + hh];
	int dr = doc[r];
	for (int s = threadIdx.x; s <= ti; s += kBlock) {
		float g = 0.0f, pv;
		if (doc[base + s] == dr) {
			long long ks = ((base + s) * kv + kh) * d;
			g = dscore(&pv, q + at, k + ks, v + ks, dout + at, l, delta, d, scale);
		}
		ds[s] = g;
	}
	__syncthreads();
	for (int i = threadIdx.x; i < d; i += kBlock) {
		float acc = 0.0f;
		for (int s = 0; s <= ti; s++)
			acc = __fmaf_rn(ds[s], k[((base + s) * kv + kh) * d + i], acc);
		dq[at + i] = __fadd_rn(dq[at + i], acc);
	}
}

// attention_backward_dkv_f32 is AttentionBackward's key and value gradients. Block (r, kh)
// takes key row r = b·T + s and key/value head kh. For each query head hh of its group
// (kh·G, ..., kh·G+G-1, in order), for each query t >= s that sees key s: p_t and ds_t =
// scale·p_t·(dout_t·v - δ_t) (dscore, δ_t = dout_t·out_t by headDot, as in
// attention_backward_dq_f32, so both kernels use the same ds), 0 for the others, into
// shared memory; then, one thread per column i, dk[r, kh, i] += Σ_t ds_t·q_t[i] and
// dv[r, kh, i] += Σ_t p_t·dout_t[i], each summed over t = s..T-1 in order and then added,
// head after head.
//   dk, dv, k, v: [B·T, KV·D]  dout, out, q: [B·T, H·D]  lse: [B·T, H]  doc: [B·T]
// Launch: grid (B·T, KV), block (kBlock), dynamic shared memory 2·T floats (above 6144
// positions, more than the default 48 KiB: see attention_f32).
extern "C" __global__ void attention_backward_dkv_f32(float* dk, float* dv, const float* dout, const float* out,
                                                      const float* lse, const float* q, const float* k,
                                                      const float* v, const int* doc, int t, int h, int kv, int d,
                                                      float scale) {
	using namespace attn;
	extern __shared__ float smem[];
	float* ps = smem;      // [t]: p_t of the current head, indexed by query position
	float* ds = smem + t;  // [t]: ds_t likewise
	int r = blockIdx.x, kh = blockIdx.y;
	int si = r % t, g = h / kv;
	long long base = r - si;
	long long kat = ((long long)r * kv + kh) * d;
	int dr = doc[r];
	for (int hh = kh * g; hh < kh * g + g; hh++) {
		for (int ti = si + threadIdx.x; ti < t; ti += kBlock) {
			float pv = 0.0f, gv = 0.0f;
			long long qr = base + ti;
			if (doc[qr] == dr) {
				long long at = (qr * h + hh) * d;
				float delta = headDot(dout + at, out + at, d);
				gv = dscore(&pv, q + at, k + kat, v + kat, dout + at, lse[qr * h + hh], delta, d, scale);
			}
			ps[ti] = pv;
			ds[ti] = gv;
		}
		__syncthreads();
		for (int i = threadIdx.x; i < d; i += kBlock) {
			float ak = 0.0f, av = 0.0f;
			for (int ti = si; ti < t; ti++) {
				long long at = ((base + ti) * h + hh) * d + i;
				ak = __fmaf_rn(ds[ti], q[at], ak);
				av = __fmaf_rn(ps[ti], dout[at], av);
			}
			dk[kat + i] = __fadd_rn(dk[kat + i], ak);
			dv[kat + i] = __fadd_rn(dv[kat + i], av);
		}
		__syncthreads(); // the next head overwrites ps and ds
	}
}
