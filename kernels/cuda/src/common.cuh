// What several kernel files share, put before each of them when it is compiled
// (cuda.Cache.Kernel): NVRTC here has no CUDA headers, so these few helpers are herd's.

namespace herd {

// negInf is float32's -Inf (no header defines INFINITY here).
__device__ __forceinline__ float negInf() { return __int_as_float(0xff800000); }

// blockReduce returns the max (isMax) or the sum of v over the block's threads, the same
// value in every thread: each warp combines its 32 values by shuffles (lane i with lane
// i+16, +8, +4, +2, +1), then warp 0 combines the block/32 warp results the same way. The
// order depends on block, so a launch must use exactly that many threads. Every thread of
// the block must call it; it uses 33 floats of static shared memory per instantiation.
template <int block, bool isMax> __device__ float blockReduce(float v) {
	__shared__ float warps[32];
	__shared__ float total;
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	for (int off = 16; off > 0; off >>= 1) {
		float o = __shfl_down_sync(0xffffffffu, v, off);
		v = isMax ? fmaxf(v, o) : __fadd_rn(v, o);
	}
	if (lane == 0)
		warps[warp] = v;
	__syncthreads();
	if (warp == 0) {
		v = lane < block / 32 ? warps[lane] : (isMax ? negInf() : 0.0f);
		for (int off = 16; off > 0; off >>= 1) {
			float o = __shfl_down_sync(0xffffffffu, v, off);
			v = isMax ? fmaxf(v, o) : __fadd_rn(v, o);
		}
		if (lane == 0)
			total = v;
	}
	__syncthreads();
	float r = total;
	__syncthreads(); // the next call may overwrite warps and total
	return r;
}

} // namespace herd
