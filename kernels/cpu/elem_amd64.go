//go:build amd64 && !purego

package cpu

// The AVX-512 elementwise kernels (elem_avx512_amd64.s); their Go twins are in vec.go.

var avx512Vec = &vecKernels{
	expShift: expShift16, scaleMax: scaleMax16, scale: scale16, axpy: axpy16, mulAdd: mulAdd16,
	softmaxGrad: softmaxGrad16, swiGLU: swiGLU16, swiGLUBackward: swiGLUBackward16,
	dot3: dot3_16, sumSquares: sumSquares16, normRow: normRow16, normRowBackward: normRowBackward16,
	adamW: adamW16, rope: rope16, sumSquares64: sumSquares8d, dot2: dot2_16,
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

// dot3_16 is dot3's loop in AVX-512, summed in 16 lanes as laneSum does.
//
//go:noescape
func dot3_16(a, b, c []float32) float32

// normRow16 is normRow's loop in AVX-512.
//
//go:noescape
func normRow16(out, x, g []float32, r float32)

// normRowBackward16 is normRowBackward's loop in AVX-512.
//
//go:noescape
func normRowBackward16(dx, d, g, x []float32, r, corr float32)

// sumSquares16 is sumSquares's loop in AVX-512, summed in 16 lanes as laneSum does.
//
//go:noescape
func sumSquares16(x []float32) float32

// adamW16 is adamWGo's loop in AVX-512, for float32 parameters.
//
//go:noescape
func adamW16(p, g, m, v []float32, c AdamWCoeffs)

// rope16 is ropeRow's loop in AVX-512, 8 pairs per step.
//
//go:noescape
func rope16(x, cs, sn []float32, heads int, sign float32)

// sumSquares8d is sumSquares64Go's loop in AVX-512, 8 float64 lanes.
//
//go:noescape
func sumSquares8d(x []float32) float64

// dot2_16 is dot2's loop in AVX-512, summed in 16 lanes as laneSum does.
//
//go:noescape
func dot2_16(a, b []float32) float32
