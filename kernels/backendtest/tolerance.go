package backendtest

import (
	"fmt"
	"math"
)

// tolerance bounds an op's error: an element passes when |got - want| <= tol·eps·mag, with
// tol = base + perRoot·√n, eps F's machine epsilon (2^-23 for float32, 2^-52 for float64;
// 2^-52 for the ops that return float64 sums whatever F is), want the float64 reference,
// n the length of the op's longest sum (K of a GEMM, the row width of a norm), and mag the
// magnitude at which the element's rounding errors arise: the sum of the absolute values
// of the terms, Σ|a||b| for a dot product, as a rounding error analysis bounds it. Rounding
// errors of a sum of n terms of random sign grow as √n, far below the worst case n·eps, so
// perRoot carries the sums and base the few operations around them, with a factor of about
// two to spare. tol 0 means bit-exact: where the contract fixes every rounding (one
// product, a copy, AdamW's operations, SumSquares' order, LossWeights' float64 formula) or
// the op is exactly specified (FP8 codes and scales, Route's selection and layout).
//
// The same values hold for float64 backends, whose eps makes them tight.
type tolerance struct{ base, perRoot float64 }

var tolerances = map[string]tolerance{
	// A sum of K products, then the accumulate's add; MatMulCodes decodes b exactly
	// (and must equal MatMul on the decoded b bit for bit, checked separately).
	"MatMul":      {4, 2},
	"MatMulCodes": {4, 2},
	// One product per element (scale·table): correctly rounded.
	"Embedding": {0, 0},
	// Rows summed into dtable in any order: a sum of the repeats of an id.
	"EmbeddingBackward": {2, 2},
	// A mean of C squares, a square root, a reciprocal and two products.
	"RMSNorm": {8, 2},
	// dx: a dot of C terms and a few products; dg: a sum over the N rows.
	"RMSNormBackward": {8, 2},
	// Two products and a sum per value; cos and sin are inputs.
	"RoPE":         {3, 0},
	"RoPEBackward": {3, 0},
	// Logits are dots of D terms, the softmax a sum of up to T exponentials (kernels/cpu's
	// float32 exp is a polynomial good to 3 eps), the output a sum of T products; the error
	// of an exponential grows with its logit, which mag carries (see refAttention).
	"Attention": {16, 2},
	// The forward's sums, then the gradient's: two more dots and sums of T terms.
	"AttentionBackward": {16, 4},
	// An exponential (3 eps in kernels/cpu's float32), a division and two products.
	"SwiGLU": {8, 0},
	// The forward's sigmoid, then four products and a sum.
	"SwiGLUBackward": {16, 0},
	// A sum of V exponentials and a logarithm; the loss subtracts the target's logit.
	"CrossEntropy": {8, 2},
	// An exponential of logit - lse (its error grows with that difference, which mag
	// carries) and a product and a sum.
	"CrossEntropyBackward": {8, 0},
	// F(float64(scale)·float64(mask)/tokens): one rounding the contract fixes.
	"LossWeights": {0, 0},
	// One product: correctly rounded.
	"Scale": {0, 0},
	// y + a·x: two roundings, or one where a backend fuses them.
	"Axpy": {2, 0},
	// A copy, or one product: correctly rounded.
	"GatherRows":  {0, 0},
	"ScatterRows": {0, 0},
	// k weighted rows summed into dst.
	"GatherSum": {2, 2},
	// A dot of C terms.
	"RowDots": {4, 2},
	// Probabilities: exponentials and a sum of E terms in float64, rounded to F (twice on
	// the CPU: each exponential, then the quotient); gates: a float64 sigmoid rounded to F.
	// The selection, the counts and the layout are exact (compared bit for bit).
	"Route": {4, 1},
	// Route's probabilities alone, over rows of up to a KV cache's length.
	"Softmax": {4, 1},
	// dgate·g·(1-g) in F, plus the aux term computed in float64 and rounded to F.
	"RouterBackward": {4, 1},
	// Float64 sums in index order, eps = 2^-52: a backend may sum in another order.
	"Dot":         {2, 2},
	"ColumnSums":  {2, 2},
	"MeanAbsDiff": {4, 2},
	// Exact: the contract fixes the order of every addition, so that the gradient norm
	// has the same bits on any number of threads.
	"SumSquares": {0, 0},
	// Exact: one rounding per operation in F, the order fixed by kernels.AdamWCoeffs.
	"AdamW": {0, 0},
	// FP8: exactly specified (round to nearest even, saturation, scale rule), so exact.
	"Amax":            {0, 0},
	"Quantize":        {0, 0},
	"Dequantize":      {0, 0},
	"QuantizeTiles":   {0, 0},
	"DequantizeTiles": {0, 0},
}

// tol is the current op's tolerance for sums of n terms, in units of eps·mag.
func (e *env[F]) tol(n int) float64 {
	t, ok := tolerances[e.op]
	if !ok {
		panic(fmt.Sprintf("backendtest: no tolerance for %s", e.op))
	}
	return t.base + t.perRoot*math.Sqrt(float64(n))
}

// tol64 is the tolerance of a float64 result for sums of n terms, in units of mag:
// eps = 2^-52 whatever F is.
func (e *env[F]) tol64(n int) float64 { return e.tol(n) * 0x1p-52 }
