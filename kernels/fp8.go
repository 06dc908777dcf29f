package kernels

// FP8 is an 8-bit floating-point encoding (OCP FP8), the format argument of the Backend's
// FP8 operations.
//
//	E4M3: 1 sign, 4 exponent (bias 7), 3 mantissa bits. Max ±448, min subnormal 2^-9.
//	      No infinities; S.1111.111 is NaN, so the top exponent still holds 1.0–1.75.
//	E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits. Max ±57344, min subnormal 2^-16.
//	      IEEE-like: exponent 11111 is Inf (mantissa 0) or NaN.
type FP8 uint8

const (
	E4M3 FP8 = iota // forward operands: activations and weights
	E5M2            // backward operands: gradients, which need range more than precision
)
