//go:build amd64 && !purego

package cpu

// The AVX-512 elementwise kernels (elem_avx512_amd64.s); their Go twins are the loops of
// the ops that call them (ops_elementwise.go).

// expShift16 is expShift's loop in AVX-512: x[i] = e^(x[i]-shift), returning Σ x[i]
// summed in 16 lanes.
//
//go:noescape
func expShift16(x []float32, shift float32) float32

// swiGLU16 is swiglu.run's loop in AVX-512, in float32 throughout.
//
//go:noescape
func swiGLU16(out, sig, a, u []float32)

// swiGLUBackward16 is swigluBackward.run's loop in AVX-512.
//
//go:noescape
func swiGLUBackward16(da, du, dout, a, u, sig []float32)
