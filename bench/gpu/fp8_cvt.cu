// fp8_cvt converts every bfloat16 value to E4M3 and E5M2 with the GPU's own conversion
// (__nv_cvt_float_to_fp8, what Transformer Engine's cast kernels use), saturating
// (__NV_SATFINITE) and not (__NV_NOSAT), and writes the codes in the layout of fp8dump's
// codes.u8, for bench/gpu/fp8_check.py to compare with herd's.
//
// build: nvcc -O2 -arch=sm_90 -o fp8_cvt bench/gpu/fp8_cvt.cu      usage: fp8_cvt OUT
#include <cuda_fp8.h>
#include <cstdio>
#include <cstring>
#include <vector>

__global__ void cvt(const float* x, unsigned char* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    out[i] = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
    out[n + i] = __nv_cvt_float_to_fp8(v, __NV_NOSAT, __NV_E4M3);
    out[2 * n + i] = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E5M2);
    out[3 * n + i] = __nv_cvt_float_to_fp8(v, __NV_NOSAT, __NV_E5M2);
}

int main(int argc, char** argv) {
    if (argc != 2) { fprintf(stderr, "usage: fp8_cvt OUT\n"); return 2; }
    const int n = 1 << 16;
    std::vector<float> x(n);
    for (int b = 0; b < n; b++) {
        unsigned int bits = (unsigned int)b << 16;
        memcpy(&x[b], &bits, 4);
    }
    float* dx; unsigned char* dout;
    if (cudaMalloc(&dx, n * 4) || cudaMalloc(&dout, 4 * n)) { fprintf(stderr, "cudaMalloc failed\n"); return 1; }
    cudaMemcpy(dx, x.data(), n * 4, cudaMemcpyHostToDevice);
    cvt<<<(n + 255) / 256, 256>>>(dx, dout, n);
    std::vector<unsigned char> out(4 * n);
    cudaError_t err = cudaMemcpy(out.data(), dout, 4 * n, cudaMemcpyDeviceToHost);
    if (err != cudaSuccess) { fprintf(stderr, "%s\n", cudaGetErrorString(err)); return 1; }
    FILE* f = fopen(argv[1], "wb");
    if (!f || fwrite(out.data(), 1, out.size(), f) != out.size() || fclose(f)) { perror(argv[1]); return 1; }
    return 0;
}
