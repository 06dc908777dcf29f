// The FP8 ops of kernels.Backend on the GPU: Amax, Quantize, Dequantize, QuantizeTiles and
// DequantizeTiles, the twins of kernels/cpu/fp8.go and fp8_tiles.go, bit for bit: codes
// are kernels.FP8.Encode(x, SatFinite) (round to nearest even from the exact float32 value,
// saturate at ±max, NaN to 0x7F), values are kernels.FP8.Decode, and a tile's scale is
// kernels.FP8Scale's rule. The conformance suite holds every output of these ops exact.
//
// Formats are kernels.FP8's values: f = 0 is E4M3, f = 1 is E5M2. Every operand is
// float32 (the Backend's FP8 ops take Buf[float32] whatever F is), so there is no float64
// variant. Flat lengths are 64-bit; an empty optional output (codes, vals, inv) is a null
// pointer and is not written.
//
// Deterministic: an amax is a maximum, which does not depend on the order in which values
// meet, so each block raises the one result with an integer atomicMax on the bit pattern
// of its magnitude (no floating-point atomics): for non-negative floats the integer order
// is the numeric order, and every NaN pattern is above +Inf, so the amax is NaN exactly
// when a NaN was read, as on the CPU. The caller zeroes the 4-byte amax before the launch
// and reads it back as a float32. Every other output element has one owning thread.
//
// Compile without --use_fast_math and with --ftz=false (NVRTC's defaults): the products
// x·scale and the decoded values are float32 numbers that may be subnormal, and the CPU
// keeps them.
//
// A launch with no elements is skipped by the caller (a grid of zero blocks is an error):
// Amax, Quantize and QuantizeTiles of nothing return 0.
//
// The file includes no header (NVRTC compiles it without the CUDA headers), so its helpers
// are its own: each .cu file is a program of its own.

namespace fp8 {

// kBlock is the block size of every kernel here; blockMaxBits' tree depends on it, so a
// launch must use exactly this many threads.
constexpr int kBlock = 256;

// Format holds the constants of one FP8 format's conversions, as kernels.fp8Format does.
struct Format {
	unsigned mbits;     // mantissa bits
	unsigned bias;      // exponent bias
	unsigned maxCode;   // code of +max
	unsigned minNormal; // float32 bits of 2^emin, emin = 1 - bias
	unsigned magic;     // float32 bits of 2^(emin-mbits+23): adding it rounds |x| < 2^emin to the subnormal grid
	float max;          // largest finite value
};

// format returns the constants of kernels.FP8 f: 0 is E4M3, 1 is E5M2.
__device__ __forceinline__ Format format(int f) {
	if (f == 0)
		return Format{3, 7, 0x7E, (127 - 6) << 23, (127 + 14) << 23, 448.0f};
	return Format{2, 15, 0x7B, (127 - 14) << 23, (127 + 7) << 23, 57344.0f};
}

// encode is kernels.FP8.Encode(x, SatFinite): one rounding to nearest even from x's exact
// value; NaN gives the canonical 0x7F, values beyond the largest finite one and ±Inf give
// ±max; the sign of ±0 and of values that round to 0 is kept.
__device__ __forceinline__ unsigned encode(float x, const Format& p) {
	unsigned b = __float_as_uint(x), a = b & 0x7FFFFFFFu;
	if (a > 0x7F800000u)
		return 0x7F;
	unsigned code;
	if (a < p.minNormal) {
		// Subnormal range: magic's ulp is the FP8 quantum, so the float32 addition rounds |x|
		// once, to nearest even, onto the grid; the bits above magic's count the quanta.
		float m = __uint_as_float(p.magic);
		code = __float_as_uint(__fadd_rn(__uint_as_float(a), m)) - p.magic;
	} else {
		// Normal range: keep mbits of the mantissa, rounding the dropped bits to nearest
		// even (add just under half, plus the kept LSB), then rebias the exponent. A carry
		// out of the mantissa correctly bumps the exponent; any code above maxCode overflowed.
		unsigned s = 23 - p.mbits;
		code = ((a + (1u << (s - 1)) - 1 + ((a >> s) & 1)) >> s) - ((127 - p.bias) << p.mbits);
	}
	if (code > p.maxCode)
		code = p.maxCode;
	return code | ((b >> 24) & 0x80);
}

// decode is kernels.FP8.Decode(c): the exact value of code c; E4M3's S.1111.111 and E5M2's
// exponent 11111 with a non-zero mantissa are NaN (sign kept), E5M2's ±Inf are ±Inf.
__device__ __forceinline__ float decode(unsigned c, const Format& p) {
	unsigned sign = (c & 0x80) << 24, mag = c & 0x7F;
	unsigned e = mag >> p.mbits, m = mag & ((1u << p.mbits) - 1);
	if (mag > p.maxCode)
		return __uint_as_float(sign | (p.mbits == 2 && m == 0 ? 0x7F800000u : 0x7FC00000u));
	if (e == 0) // m quanta of 2^(emin-mbits): a small integer times a power of two, exact
		return __uint_as_float(sign | __float_as_uint(__fmul_rn((float)m, __uint_as_float((128 - p.bias - p.mbits) << 23))));
	return __uint_as_float(sign | ((e + 127 - p.bias) << 23) | (m << (23 - p.mbits)));
}

// scaleOf is kernels.FP8Scale(amax, 1, f, margin, pow2) for an amax given by its bits:
// (max / amax) / 2^margin, rounded down to a power of two when pow2 is set, clamped to
// [2^-126, 2^126]; 1 when amax is zero or not finite.
__device__ __forceinline__ float scaleOf(unsigned amaxBits, const Format& p, int margin, int pow2) {
	if (amaxBits == 0 || amaxBits >= 0x7F800000u)
		return 1.0f;
	float s = __fdiv_rn(p.max, __uint_as_float(amaxBits));
	if (margin != 0) // in float64 then rounded to float32, as math.Ldexp then float32()
		s = __double2float_rn(ldexp((double)s, -margin));
	s = fminf(fmaxf(s, __uint_as_float(1u << 23)), __uint_as_float(253u << 23)); // [2^-126, 2^126]
	if (pow2)
		s = __uint_as_float(__float_as_uint(s) & ~((1u << 23) - 1)); // s is normal: drop the mantissa
	return s;
}

// magBits is the bit pattern of |x|: integer order is numeric order, NaNs above +Inf.
__device__ __forceinline__ unsigned magBits(float x) { return __float_as_uint(x) & 0x7FFFFFFFu; }

// blockMaxBits returns, in thread 0, the largest v of the kBlock threads of the block (a
// tree in shared memory; max does not depend on its order). Every thread must call it.
__device__ unsigned blockMaxBits(unsigned v) {
	__shared__ unsigned sm[kBlock];
	sm[threadIdx.x] = v;
	__syncthreads();
	for (int s = kBlock / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sm[threadIdx.x] = max(sm[threadIdx.x], sm[threadIdx.x + s]);
		__syncthreads();
	}
	return sm[0];
}

} // namespace fp8

// fp8_amax is Amax: *amax = max over i of |x[i]|'s bits (NaN if any x[i] is NaN). Threads
// stride over x by the grid's size; each block raises *amax once.
//   amax: 1 (zeroed by the caller)  x: [n]
// Launch: grid (min(ceil(n/kBlock), any cap)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void fp8_amax(unsigned* amax, const float* x, long long n) {
	unsigned m = 0;
	for (long long i = (long long)blockIdx.x * fp8::kBlock + threadIdx.x; i < n; i += (long long)gridDim.x * fp8::kBlock)
		m = max(m, fp8::magBits(x[i]));
	m = fp8::blockMaxBits(m);
	if (threadIdx.x == 0)
		atomicMax(amax, m);
}

// fp8_quantize is Quantize: codes[i] = Encode(src[i]·scale, SatFinite) (the product rounded
// to float32 first) and vals[i] = Decode(codes[i]), unscaled; either may be null. *amax is
// raised to the amax of src, as fp8_amax does.
//   codes, vals, src: [n]  amax: 1 (zeroed by the caller)
// Launch: grid (min(ceil(n/kBlock), any cap)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void fp8_quantize(unsigned char* codes, float* vals, unsigned* amax, const float* src, long long n,
	float scale, int f) {
	fp8::Format p = fp8::format(f);
	unsigned m = 0;
	for (long long i = (long long)blockIdx.x * fp8::kBlock + threadIdx.x; i < n; i += (long long)gridDim.x * fp8::kBlock) {
		float x = src[i];
		m = max(m, fp8::magBits(x));
		unsigned c = fp8::encode(__fmul_rn(x, scale), p);
		if (codes)
			codes[i] = (unsigned char)c;
		if (vals)
			vals[i] = fp8::decode(c, p);
	}
	m = fp8::blockMaxBits(m);
	if (threadIdx.x == 0)
		atomicMax(amax, m);
}

// fp8_dequantize is Dequantize: dst[i] = Decode(src[i])·scaleInv.
//   dst, src: [n]
// Launch: grid (ceil(n/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void fp8_dequantize(float* dst, const unsigned char* src, long long n, float scaleInv, int f) {
	long long i = (long long)blockIdx.x * fp8::kBlock + threadIdx.x;
	if (i < n)
		dst[i] = __fmul_rn(fp8::decode(src[i], fp8::format(f)), scaleInv);
}

// fp8_quantize_tiles is QuantizeTiles (kernels.TileQuant) of a [rows, cols] matrix src in
// tiles of tr×tc (tr >= 1, 1 <= tc <= 128), ntc = ceil(cols/tc) tiles across. Each tile
// gets scale = FP8Scale(its amax, 1, f, margin, pow2) and inv = 1/scale; then, for every
// element x of the tile, codes[i] = Encode(x·scale) and vals[i] = Decode(codes[i])·(inv·mul)
// (the two factors multiplied first, as the CPU does), and inv[tile] = inv, tiles
// row-major; codes, vals and inv may each be null, and vals may be src (in place: every
// element is read before it is written, by the same thread). *amax is raised to the amax
// of the matrix.
//
// Block (bx, by) takes the band of rows [bx·tr, bx·tr+tr) and the tiles [by·g, by·g+g) of
// it, g = max(1, 32/tc) tiles, w = g·tc <= 128 columns: thread (tx, ty) reads columns
// tx, tx+32, tx+64, tx+96 (< w) of the group and rows ty, ty+ny, ... of the band (ny =
// blockDim.y), so that a warp reads 32 neighbouring columns of one row (coalesced for 1×T,
// T×T and T×1 tiles alike). A tile's amax: each thread's maximum per column, then a tree
// over ty, then a tree over the tile's columns, in shared memory. The results do not
// depend on ny (a maximum has no order); ny = the largest power of two <= min(tr, 8) keeps
// every thread busy (ny = 1 for 1×T tiles, 8 for T×T and T×1).
//   codes, vals, src: [rows, cols]  inv: [ceil(rows/tr), ntc]  amax: 1 (zeroed by the caller)
// Launch: grid (ceil(rows/tr), ceil(ntc/g) <= 65535), block (32, ny), no dynamic shared
// memory.
extern "C" __global__ void fp8_quantize_tiles(unsigned char* codes, float* vals, float* inv, unsigned* amax,
	const float* src, int rows, int cols, int tr, int tc, float mul, int f, int margin, int pow2) {
	__shared__ unsigned colMax[8][128]; // per ty, per column of the group; then per column; then per tile
	__shared__ float tileScale[32], tileK[32];
	fp8::Format p = fp8::format(f);
	int tx = threadIdx.x, ty = threadIdx.y, ny = blockDim.y, id = ty * 32 + tx;
	int g = tc >= 32 ? 1 : 32 / tc, w = g * tc, ntc = (cols + tc - 1) / tc;
	int r0 = blockIdx.x * tr, r1 = min(r0 + tr, rows);
	int t0 = blockIdx.y * g, c0 = t0 * tc, c1 = min(c0 + w, cols);

	for (int j = tx; j < w; j += 32) {
		unsigned m = 0;
		if (c0 + j < c1)
			for (int r = r0 + ty; r < r1; r += ny)
				m = max(m, fp8::magBits(src[(long long)r * cols + c0 + j]));
		colMax[ty][j] = m;
	}
	__syncthreads();
	for (int s = ny / 2; s > 0; s >>= 1) { // over ty: colMax[0][j] = the column's maximum
		if (ty < s)
			for (int j = tx; j < w; j += 32)
				colMax[ty][j] = max(colMax[ty][j], colMax[ty + s][j]);
		__syncthreads();
	}
	int top = 1; // the tree over a tile's columns: halves from the power of two >= tc
	while (top < tc)
		top <<= 1;
	for (int s = top / 2; s > 0; s >>= 1) { // colMax[0][l·tc] = tile l's maximum
		if (ty == 0)
			for (int j = tx; j < w; j += 32) {
				int local = j % tc;
				if (local < s && local + s < tc)
					colMax[0][j] = max(colMax[0][j], colMax[0][j + s]);
			}
		__syncthreads();
	}
	if (id < g && c0 + id * tc < cols) {
		unsigned a = colMax[0][id * tc];
		float scale = fp8::scaleOf(a, p, margin, pow2), iv = __fdiv_rn(1.0f, scale);
		tileScale[id] = scale;
		tileK[id] = __fmul_rn(iv, mul);
		if (inv)
			inv[(long long)blockIdx.x * ntc + t0 + id] = iv;
	}
	if (id == 0) {
		unsigned m = 0;
		for (int l = 0; l < g && c0 + l * tc < cols; l++)
			m = max(m, colMax[0][l * tc]);
		atomicMax(amax, m);
	}
	__syncthreads();

	for (int j = tx; j < w && c0 + j < c1; j += 32) {
		int l = j / tc;
		float scale = tileScale[l], k = tileK[l];
		for (int r = r0 + ty; r < r1; r += ny) {
			long long i = (long long)r * cols + c0 + j;
			unsigned c = fp8::encode(__fmul_rn(src[i], scale), p);
			if (codes)
				codes[i] = (unsigned char)c;
			if (vals)
				vals[i] = __fmul_rn(fp8::decode(c, p), k);
		}
	}
}

// fp8_dequantize_tiles is DequantizeTiles (kernels.TileDequant): dst[i] =
// Decode(codes[i])·(inv[tile of i]·mul) for a [rows, cols] matrix in tr×tc tiles, inv
// row-major over the ceil(rows/tr) × ceil(cols/tc) tiles. One thread per element.
//   dst, codes: [rows, cols]  inv: [ceil(rows/tr), ceil(cols/tc)]
// Launch: grid (ceil(rows·cols/kBlock)), block (kBlock), no dynamic shared memory.
extern "C" __global__ void fp8_dequantize_tiles(float* dst, const unsigned char* codes, const float* inv, int rows,
	int cols, int tr, int tc, float mul, int f) {
	long long i = (long long)blockIdx.x * fp8::kBlock + threadIdx.x;
	if (i >= (long long)rows * cols)
		return;
	int r = (int)(i / cols), c = (int)(i % cols), ntc = (cols + tc - 1) / tc;
	float k = __fmul_rn(inv[(long long)(r / tr) * ntc + c / tc], mul);
	dst[i] = __fmul_rn(fp8::decode(codes[i], fp8::format(f)), k);
}
