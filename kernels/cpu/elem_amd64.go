//go:build amd64 && !purego

package cpu

// The AVX-512 elementwise kernels (elem_avx512_amd64.s); their Go twins are in vec.go.

var avx512Vec = &vecKernels{
	expShift: expShift16, scaleMax: scaleMax16, scale: scale16, axpy: axpy16, mulAdd: mulAdd16,
	softmaxGrad: softmaxGrad16, swiGLU: swiGLU16, swiGLUBackward: swiGLUBackward16,
}

// expShift16 is expShift's loop in AVX-512: x[i] = e^(x[i]-shift), returning Σ x[i]
// summed in 16 lanes.
//
//go:noescape
func expShift16(x []float32, shift float32) float32

// swiGLU16 is swiGLU's loop in AVX-512, in float32 throughout.
//
//go:noescape
func swiGLU16(out, sig, a, u []float32)

// swiGLUBackward16 is swiGLUBackward's loop in AVX-512.
//
//go:noescape
func swiGLUBackward16(da, du, dout, a, u, sig []float32)

// scaleMax16 scales x by s in place and returns the largest element (the softmax max).
//
//go:noescape
func scaleMax16(x []float32, s float32) float32

// scale16 is scaleBy's loop in AVX-512.
//
//go:noescape
func scale16(x []float32, s float32)

// axpy16 is axpyTo's loop in AVX-512.
//
//go:noescape
func axpy16(y, x []float32, a float32)

// mulAdd16 is y[i] += a[i]·b[i]·s in AVX-512 (RMSNorm's gain gradient).
//
//go:noescape
func mulAdd16(y, a, b []float32, s float32)

// softmaxGrad16 is d[i] = s·p[i]·(d[i] - dt) in AVX-512 (attention's backward).
//
//go:noescape
func softmaxGrad16(d, p []float32, dt, s float32)

// packB32 is packB's loop for 32 full columns of an untransposed b.
//
//go:noescape
func packB32(dst, b []float32, ldb, kb int)
