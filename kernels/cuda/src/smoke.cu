// smoke.cu: the smallest kernel, so that the embedded sources and the NVRTC compile check
// have a file before the real kernels land. y[i] = a*x[i] + y[i] for i < n.
extern "C" __global__ void herd_smoke_axpy(float *y, const float *x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * x[i] + y[i];
    }
}
