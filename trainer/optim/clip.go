package optim

import (
	"math"

	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/cpu"
)

// GradNorm is the L2 norm of grads. Each block of elements is summed in float64 (in 8
// lanes, in a fixed order) and the block sums are added in order, so the result is the
// same bits on any number of threads. The block sums live in recycled scratch, so that a
// training step allocates nothing.
func GradNorm[F kernels.Float](grads []F) float64 {
	n := (len(grads) + block - 1) / block
	scratch := cpu.Take[blockSums]()
	if cap(*scratch) < n {
		*scratch = make(blockSums, n)
	}
	sums := (*scratch)[:n]
	cpu.ParallelFor(n, 1, normTask[F]{grads, sums})
	var total float64
	for _, s := range sums {
		total += s
	}
	cpu.Release(scratch)
	return math.Sqrt(total)
}

// blockSums is GradNorm's scratch: one float64 per block.
type blockSums []float64

// normTask sums the squares of blocks of grads into sums, one per block.
type normTask[F kernels.Float] struct {
	grads []F
	sums  blockSums
}

// Run sums blocks [lo, hi), each with kernels/cpu's SumSquares64 (8 float64 lanes in a
// fixed order).
func (t normTask[F]) Run(lo, hi int) {
	for b := lo; b < hi; b++ {
		t.sums[b] = cpu.SumSquares64(t.grads[b*block : min((b+1)*block, len(t.grads))])
	}
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
