package optim

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// GradNorm is the L2 norm of grads. Each block of elements is summed in float64 and the
// block sums are added in order, so the result is the same bits on any number of threads.
func GradNorm[F kernels.Float](grads []F) float64 {
	sums := make([]float64, (len(grads)+block-1)/block)
	forBlocks([]Group{{Size: len(grads)}}, func(_ Group, lo, hi int) {
		var s float64
		for _, g := range grads[lo:hi] {
			s += float64(g) * float64(g)
		}
		sums[lo/block] = s
	})
	var total float64
	for _, s := range sums {
		total += s
	}
	return math.Sqrt(total)
}

// Clip scales grads down so that their global norm is at most limit, as
// torch.nn.utils.clip_grad_norm_ does, and returns the norm before clipping. limit <= 0
// turns clipping off. A non-finite norm leaves grads untouched: the caller must stop.
func Clip[F kernels.Float](grads []F, limit float64) float64 {
	norm := GradNorm(grads)
	if limit <= 0 || !(norm > limit) || math.IsInf(norm, 0) {
		return norm
	}
	scale := F(limit / (norm + 1e-6))
	forBlocks([]Group{{Size: len(grads)}}, func(_ Group, lo, hi int) {
		for i := lo; i < hi; i++ {
			grads[i] *= scale
		}
	})
	return norm
}
