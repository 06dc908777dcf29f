package optim

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// GradNorm is the L2 norm of grads, read back from be's SumSquares: each block of elements
// is summed in float64 (in 8 lanes, in a fixed order) and the block sums are added in
// order, so the result is the same bits on any number of threads.
func GradNorm[F kernels.Float](be kernels.Backend[F], grads kernels.Buf[F]) float64 {
	return math.Sqrt(be.SumSquares(grads))
}

// ClipFactor is what clipping multiplies the gradients by, given their GradNorm, as
// torch.nn.utils.clip_grad_norm_ does: limit/(norm+1e-6) when the norm is finite and above
// limit > 0, else 1 (limit <= 0 turns clipping off; a non-finite norm leaves the
// gradients alone, and the caller must stop). AdamW.StepScaled applies it as the update
// reads the gradients, which saves a pass of its own over them.
func ClipFactor(norm, limit float64) float64 {
	if limit <= 0 || !(norm > limit) || math.IsInf(norm, 0) {
		return 1
	}
	return limit / (norm + 1e-6)
}
