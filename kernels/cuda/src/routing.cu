// A mixture of experts' routing of kernels.Backend on the GPU: Route and RouterBackward
// (and Softmax, which shares Route's probabilities),
// the twins of kernels/cpu/routing.go. Legend: N tokens, E experts, top k, N·k slots
// (slot s = t·k + j is token t's j-th choice), the slots' rows laid out grouped by expert.
//
//   Softmax:        softmax_f32.
//   Route:          route_select_f32, route_layout, route_tokens, in that order; then the
//                   host reads back counts (the read-back that sizes the expert GEMMs).
//   RouterBackward: router_aux_f32, then router_gates_f32.
//
// The Backend's host slices cross as they lie in Go's memory (64-bit hosts): counts is
// written as E Go ints (int64) that download into the []int byte for byte, start (E+1 Go
// ints) and load (E float64s) are uploaded the same way.
//
// Deterministic: no atomics. Each token's softmax and top k are one thread's loops in
// expert order, as on the CPU; the layout ranks each slot among its expert's slots by a
// scan in slot order; every element of dr has one owning thread per kernel.
//
// Every float operand is float32 (F = float32, the trainer's type); the probabilities,
// gates and the aux term are computed in float64 whatever F is. A float64 variant would
// be route_select_f32, router_aux_f32 and router_gates_f32 instantiated for double under
// _f64 names (the conversions to F then exact), and route_layout's for double gates;
// route_tokens reads no F.
//
// A launch with no slots is skipped by the caller (a grid of zero blocks is an error):
// Route of no tokens clears counts on the host.
//
// The file includes no header (NVRTC compiles it without the CUDA headers), so its helpers
// are its own: each .cu file is a program of its own.

namespace route {

// kBlock is the block size of every kernel here; route_layout's scan is written for it,
// so a launch must use exactly this many threads.
constexpr int kBlock = 256;

// negInf is float64's -Inf (no header defines INFINITY here).
__device__ __forceinline__ double negInf() { return __longlong_as_double(0xfff0000000000000ll); }

// blockSumInt returns, in every thread, the sum of v over the kBlock threads of the block.
// Every thread must call it.
__device__ long long blockSumInt(long long v) {
	__shared__ long long sm[kBlock];
	sm[threadIdx.x] = v;
	__syncthreads();
	for (int s = kBlock / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sm[threadIdx.x] += sm[threadIdx.x + s];
		__syncthreads();
	}
	long long sum = sm[0];
	__syncthreads(); // sm is reused by the next call
	return sum;
}

// scanFlags returns, in thread i, how many of threads 0..i-1 have flag set, and sets
// *total to how many of all kBlock threads do (an exclusive scan in shared memory,
// Hillis-Steele). Every thread must call it.
__device__ int scanFlags(int flag, int* total) {
	__shared__ int sm[2][kBlock];
	int in = 0;
	sm[in][threadIdx.x] = flag;
	__syncthreads();
	for (int s = 1; s < kBlock; s <<= 1) {
		int v = sm[in][threadIdx.x];
		if (threadIdx.x >= s)
			v += sm[in][threadIdx.x - s];
		sm[1 - in][threadIdx.x] = v;
		in = 1 - in;
		__syncthreads();
	}
	int inclusive = sm[in][threadIdx.x];
	*total = sm[in][kBlock - 1];
	__syncthreads(); // sm is reused by the next call
	return inclusive - flag;
}

// softmaxRow writes pr = softmax(row) over e values in float64 as the CPU's Route and
// Softmax compute it: mx = the largest value (NaN if any is NaN, as Go's max), pr[x] =
// float32(exp(row[x] - mx)), sum = Σ_x exp(row[x] - mx) in index order (the unrounded
// exponentials), then pr[x] = float32(pr[x] / sum).
__device__ void softmaxRow(float* pr, const float* row, int e) {
	double mx = negInf();
	for (int x = 0; x < e; x++) {
		double v = row[x];
		if (v != v || v > mx) // a NaN sticks: nothing is > NaN
			mx = v;
	}
	double sum = 0;
	for (int x = 0; x < e; x++) {
		double p = exp(__dsub_rn((double)row[x], mx));
		pr[x] = (float)p;
		sum = __dadd_rn(sum, p);
	}
	for (int x = 0; x < e; x++)
		pr[x] = (float)__ddiv_rn((double)pr[x], sum);
}

} // namespace route

// softmax_f32 is Softmax: out[i,:] = softmax(x[i,:]), one thread per row (softmaxRow).
//   out, x: [rows, cols]
// Launch: grid (ceil(rows/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void softmax_f32(float* out, const float* x, int rows, int cols) {
	int i = blockIdx.x * route::kBlock + threadIdx.x;
	if (i < rows)
		route::softmaxRow(out + (long long)i * cols, x + (long long)i * cols, cols);
}

// route_select_f32 is Route's per-token part, one thread per token t, in float64 as the
// CPU computes it:
//   - probs[t,:] = softmaxRow(r[t,:]);
//   - slot (t, j), j < k: the largest logit among the experts not picked yet, ties to the
//     lower index (a strict >, expert order, as on the CPU); gate[t·k+j] = float32(1 / (1 +
//     exp(-logit))), and rowTok[t·k+j] = the expert, kept there until route_layout has laid
//     the slots out and route_tokens overwrites it.
//   probs, r: [N, E]  gate, rowTok: [N·k]
// Launch: grid (ceil(N/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void route_select_f32(float* probs, float* gate, int* rowTok, const float* r, int n, int e, int k) {
	int t = blockIdx.x * route::kBlock + threadIdx.x;
	if (t >= n)
		return;
	const float* row = r + (long long)t * e;
	route::softmaxRow(probs + (long long)t * e, row, e);
	int* picked = rowTok + (long long)t * k;
	for (int j = 0; j < k; j++) {
		int best = -1;
		for (int x = 0; x < e; x++) {
			bool taken = false;
			for (int i = 0; i < j; i++)
				taken |= picked[i] == x;
			if (!taken && (best < 0 || row[x] > row[best]))
				best = x;
		}
		picked[j] = best;
		gate[(long long)t * k + j] = (float)__ddiv_rn(1.0, __dadd_rn(1.0, exp(-(double)row[best])));
	}
}

// route_layout is Route's layout, from the experts that route_select_f32 left in rowTok:
// block x takes expert x. It counts the slots s with expert < x (start, the first row of
// x) and those with expert x (counts[x]), then goes through the slots in order, kBlock at a
// time, ranking each of expert x's slots among them by a scan: that slot s gets row p =
// start + its rank, slotRow[s] = p and rowGate[p] = gate[s]. So the rows are grouped by
// expert and in slot order within an expert, as on the CPU. rowTok is only read here.
//   counts: [E] (Go ints)  rowGate, gate, slotRow, rowTok: [N·k]
// Launch: grid (E), block (kBlock), no dynamic shared memory.
extern "C" __global__ void route_layout(long long* counts, float* rowGate, int* slotRow, const int* rowTok,
	const float* gate, long long nk) {
	int x = blockIdx.x;
	long long below = 0, mine = 0;
	for (long long s = threadIdx.x; s < nk; s += route::kBlock) {
		int ex = rowTok[s];
		below += ex < x;
		mine += ex == x;
	}
	long long start = route::blockSumInt(below);
	mine = route::blockSumInt(mine);
	if (threadIdx.x == 0)
		counts[x] = mine;
	for (long long s0 = 0; s0 < nk; s0 += route::kBlock) { // the same trips in every thread
		long long s = s0 + threadIdx.x;
		int flag = s < nk && rowTok[s] == x, total;
		int rank = route::scanFlags(flag, &total);
		if (flag) {
			long long p = start + rank;
			slotRow[s] = (int)p;
			rowGate[p] = gate[s];
		}
		start += total;
	}
}

// route_tokens ends Route's layout: rowTok[slotRow[s]] = s/k, the token of each row, over
// the experts route_select_f32 kept in rowTok (which route_layout has consumed). One
// thread per slot.
//   slotRow, rowTok: [N·k]
// Launch: grid (ceil(N·k/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void route_tokens(int* rowTok, const int* slotRow, long long nk, int k) {
	long long s = (long long)blockIdx.x * route::kBlock + threadIdx.x;
	if (s < nk)
		rowTok[slotRow[s]] = (int)(s / k);
}

// router_aux_f32 is RouterBackward's first part, one thread per token t: it writes the
// whole row dr[t,:], 0 when c = 0, else 0 + float32(c·probs[t,x]·(load[x] - dot)) with dot
// = Σ_x probs[t,x]·load[x] summed in expert order, all in float64 as on the CPU (the
// products left to right). router_gates_f32 then adds the gate terms: one addition per
// picked element, (0 + aux) + gate, which has the bits of the CPU's (0 + gate) + aux (an
// addition commutes, and 0 + y differs from y only for y = -0, which then adds as +0 both
// ways).
//   dr, probs: [N, E]  load: [E] (float64)
// Launch: grid (ceil(N/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void router_aux_f32(float* dr, const float* probs, const double* load, double c, int n, int e) {
	int t = blockIdx.x * route::kBlock + threadIdx.x;
	if (t >= n)
		return;
	float* d = dr + (long long)t * e;
	const float* p = probs + (long long)t * e;
	if (c == 0) {
		for (int x = 0; x < e; x++)
			d[x] = 0.0f;
		return;
	}
	double dot = 0;
	for (int x = 0; x < e; x++)
		dot = __dadd_rn(dot, __dmul_rn((double)p[x], load[x]));
	for (int x = 0; x < e; x++)
		d[x] = __fadd_rn(0.0f, (float)__dmul_rn(__dmul_rn(c, (double)p[x]), __dsub_rn(load[x], dot)));
}

// router_gates_f32 is RouterBackward's second part, after router_aux_f32: for every row p
// of Route's layout, of expert x (start[x] <= p < start[x+1], found by binary search) and
// token t = rowTok[p], dr[t,x] += dgate[p]·g·(1-g) with g = rowGate[p], in float32, the
// products left to right. A token picks an expert at most once, so each element of dr has
// at most one row: one thread per row.
//   dr: [N, E]  dgate, rowGate, rowTok: [N·k]  start: [E+1] (Go ints, start[E] = N·k)
// Launch: grid (ceil(N·k/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void router_gates_f32(float* dr, const float* dgate, const float* rowGate, const int* rowTok,
	const long long* start, int e) {
	long long p = (long long)blockIdx.x * route::kBlock + threadIdx.x;
	if (p >= start[e])
		return;
	int lo = 0, hi = e; // the last x with start[x] <= p: start[lo] <= p < start[hi]
	while (hi - lo > 1) {
		int mid = (lo + hi) / 2;
		if (start[mid] <= p)
			lo = mid;
		else
			hi = mid;
	}
	float g = rowGate[p];
	long long at = (long long)rowTok[p] * e + lo;
	dr[at] = __fadd_rn(dr[at], __fmul_rn(__fmul_rn(dgate[p], g), __fsub_rn(1.0f, g)));
}
