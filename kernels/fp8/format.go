// Package fp8 is herd's 8-bit floating point recipes: the delayed, current and blockwise
// scaling of Transformer Engine and DeepSeek-V3 over the OCP FP8 formats E4M3 and E5M2, an
// emulated FP8 GEMM for the linear layers, and a codec that keeps activations as E4M3
// tiles. The numbers are the Backend's (kernels.Backend's Amax, Quantize, QuantizeTiles,
// ...): this package keeps the scaling state and decides what is quantized with which
// scale. On a CPU every FP8 value is decoded exactly to float32, so an emulated run takes
// the same rounding decisions as the tensor cores of an H100.
//
// The model never imports this package: the trainer attaches a Linear to each of the
// model's linear layers when train.precision is fp8 (see docs/fp8.md).
package fp8

import "github.com/herdml/herd/kernels"

// Format is an FP8 encoding: kernels.FP8, whose methods are the scalar conversion.
type Format = kernels.FP8

// The formats.
const (
	E4M3 = kernels.E4M3 // forward operands: activations and weights
	E5M2 = kernels.E5M2 // backward operands: gradients, which need range more than precision
)

// Overflow says what a conversion does with a value beyond the largest finite one.
type Overflow = kernels.Overflow

// The overflow rules of Format.Encode.
const (
	SatFinite = kernels.SatFinite // clamp to ±max, as scaled training always does
	NoSat     = kernels.NoSat     // NaN (E4M3) or ±Inf (E5M2)
)
