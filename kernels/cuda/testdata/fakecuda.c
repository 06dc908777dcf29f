// A stand-in for libcuda.so.1 with the driver API calls herd binds, on host memory, so
// that a machine without a GPU checks the bindings' calling conventions (argument types,
// out-parameters, strings, launch parameters) and Memory's bookkeeping. Device addresses
// are host pointers; a "kernel" is a C function run on the host.
//
// HERD_FAKE_CUDA_DEVICES sets the number of devices cuInit finds (default 2); 0 makes
// cuInit fail with CUDA_ERROR_NO_DEVICE, as the driver does on a host without a GPU.
//
// Built by driver_test.go: cc -shared -fPIC -o libherd-fakecuda.so fakecuda.c
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum {
	SUCCESS = 0,
	INVALID_VALUE = 1,
	OUT_OF_MEMORY = 2,
	NOT_INITIALIZED = 3,
	NO_DEVICE = 100,
	INVALID_DEVICE = 101,
	INVALID_CONTEXT = 201,
	NOT_FOUND = 500,
};

static const struct {
	CUresult code;
	const char *name, *text;
} errors[] = {
	{SUCCESS, "CUDA_SUCCESS", "no error"},
	{INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	{OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	{NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	{NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	{INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	{INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	{NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
};

static int devices = -1;            // set by cuInit
static __thread uintptr_t current;  // the context current on this thread
static int allocations;             // live cuMemAlloc allocations

// A context handle is 0x1000 + its device; memory calls need one current.
#define CTX(dev) ((uintptr_t)0x1000 + (uintptr_t)(dev))
#define NEED_CONTEXT() \
	if (current == 0) return INVALID_CONTEXT

CUresult cuGetErrorName(CUresult e, const char **s) {
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == e) return *s = errors[i].name, SUCCESS;
	*s = NULL;
	return INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult e, const char **s) {
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
		if (errors[i].code == e) return *s = errors[i].text, SUCCESS;
	*s = NULL;
	return INVALID_VALUE;
}

CUresult cuInit(unsigned flags) {
	if (flags != 0) return INVALID_VALUE;
	const char *n = getenv("HERD_FAKE_CUDA_DEVICES");
	devices = n ? atoi(n) : 2;
	return devices > 0 ? SUCCESS : NO_DEVICE;
}

CUresult cuDriverGetVersion(int *v) { return *v = 12040, SUCCESS; }

CUresult cuDeviceGetCount(int *n) {
	if (devices < 0) return NOT_INITIALIZED;
	return *n = devices, SUCCESS;
}

CUresult cuDeviceGet(int *dev, int ordinal) {
	if (ordinal < 0 || ordinal >= devices) return INVALID_DEVICE;
	return *dev = ordinal, SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, int dev) {
	if (dev < 0 || dev >= devices) return INVALID_DEVICE;
	snprintf(name, len, "herd fake GPU %d", dev);
	return SUCCESS;
}

CUresult cuDeviceGetAttribute(int *v, int attr, int dev) {
	if (dev < 0 || dev >= devices) return INVALID_DEVICE;
	switch (attr) {
	case 16: return *v = 132, SUCCESS;  // multiprocessors
	case 75: return *v = 9, SUCCESS;    // compute capability major
	case 76: return *v = 0, SUCCESS;    // minor
	}
	return INVALID_VALUE;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, int dev) {
	if (dev < 0 || dev >= devices) return INVALID_DEVICE;
	return *bytes = (size_t)80 << 30, SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(uintptr_t *ctx, int dev) {
	if (dev < 0 || dev >= devices) return INVALID_DEVICE;
	return *ctx = CTX(dev), SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(int dev) {
	return dev < 0 || dev >= devices ? INVALID_DEVICE : SUCCESS;
}

CUresult cuCtxSetCurrent(uintptr_t ctx) { return current = ctx, SUCCESS; }

// Allocations are 256-byte aligned, as the driver's are, and filled with 0xA5 so that
// a caller that relies on zeroed memory without zeroing it is caught.
CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
	NEED_CONTEXT();
	void *m;
	if (n == 0) return INVALID_VALUE;
	if (posix_memalign(&m, 256, n) != 0) return OUT_OF_MEMORY;
	memset(m, 0xA5, n);
	allocations++;
	return *p = (CUdeviceptr)(uintptr_t)m, SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr p) {
	NEED_CONTEXT();
	free((void *)(uintptr_t)p);
	allocations--;
	return SUCCESS;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
	NEED_CONTEXT();
	memcpy((void *)(uintptr_t)dst, src, n);
	return SUCCESS;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
	NEED_CONTEXT();
	memcpy(dst, (const void *)(uintptr_t)src, n);
	return SUCCESS;
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
	NEED_CONTEXT();
	memcpy((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
	return SUCCESS;
}

CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) {
	NEED_CONTEXT();
	memset((void *)(uintptr_t)p, v, n);
	return SUCCESS;
}

// The one kernel, testdata/axpb.ptx's in C: y[i] = a·x[i] + b for i < n, one thread per
// element.
typedef void kernel(unsigned threads, void **params);

static void axpb(unsigned threads, void **params) {
	float *y = *(float **)params[0];
	const float *x = *(const float **)params[1];
	float a = *(float *)params[2];
	double b = *(double *)params[3];
	int n = *(int *)params[4];
	for (unsigned i = 0; i < threads && (int)i < n; i++) y[i] = (float)(a * x[i] + b);
}

// A module is any NUL-terminated image (testdata/axpb.ptx); it exports axpb.
CUresult cuModuleLoadData(uintptr_t *m, const void *image) {
	NEED_CONTEXT();
	(void)strlen(image);
	return *m = 1, SUCCESS;
}

CUresult cuModuleGetFunction(uintptr_t *f, uintptr_t m, const char *name) {
	if (m != 1) return INVALID_VALUE;
	if (strcmp(name, "axpb") != 0) return NOT_FOUND;
	return *f = (uintptr_t)axpb, SUCCESS;
}

CUresult cuLaunchKernel(uintptr_t f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, uintptr_t stream,
                        void **params, void **extra) {
	NEED_CONTEXT();
	if (f == 0 || gy != 1 || gz != 1 || by != 1 || bz != 1 || shared != 0 || stream != 7 ||
	    extra != NULL)  // one dimension, on the stream cuStreamCreate made
		return INVALID_VALUE;
	((kernel *)f)(gx * bx, params);
	return SUCCESS;
}

CUresult cuStreamCreate(uintptr_t *s, unsigned flags) {
	NEED_CONTEXT();
	return *s = 7, flags == 0 ? SUCCESS : INVALID_VALUE;
}

CUresult cuStreamSynchronize(uintptr_t s) {
	NEED_CONTEXT();
	return s == 7 || s == 0 ? SUCCESS : INVALID_VALUE;
}

// herd_fake_allocations is the fake's own: the allocations not freed, for leak checks.
int herd_fake_allocations(void) { return allocations; }
