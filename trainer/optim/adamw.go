// Package optim is herd's optimizer: AdamW over the flat parameter buffer with a learning
// rate, weight decay and eps per tensor (the MetaP table decides them), global-norm
// gradient clipping, and the learning-rate schedules.
//
// Every result is deterministic: element-wise updates do not depend on how the work is
// split, and the one reduction (the gradient norm) is summed in float64 over fixed blocks in
// a fixed order, so the thread count never changes a bit.
package optim

import (
	"fmt"
	"math"

	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/cpu"
)

// Group is one tensor's span of the flat buffers and its hyperparameters.
type Group struct {
	Name        string // tensor name, for messages and checkpoint names
	Offset      int    // first element in the flat buffers
	Size        int    // elements
	LR          float64
	WeightDecay float64
	Eps         float64
}

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW
// computes it:
//
//	m = β1·m + (1-β1)·g
//	v = β2·v + (1-β2)·g²
//	p = p·(1 - lr·wd) - lr/(1-β1ᵗ) · m / (sqrt(v)/sqrt(1-β2ᵗ) + eps)
//
// lr is the group's LR times the schedule factor. The moments are kept in float32 whatever
// the parameter type: they are half of the optimizer's memory and float32 is what every
// reference implementation stores. The arithmetic is done in the parameters' type, as in
// PyTorch (kernels/cpu.AdamW says why).
type AdamW[F kernels.Float] struct {
	Beta1, Beta2 float64
	Groups       []Group
	M, V         []float32 // first and second moments, same layout as the parameters
	T            int64     // updates applied so far; the bias correction uses T+1 next

	// spans are Groups cut into blocks once, by New, so that Step allocates nothing: a
	// group's LR, weight decay and eps may change between steps, its offset and size not.
	spans []span
}

// New returns an AdamW over total elements with zero moments. Groups must be disjoint and
// inside [0, total).
func New[F kernels.Float](total int, groups []Group, beta1, beta2 float64) (*AdamW[F], error) {
	for _, g := range groups {
		if g.Offset < 0 || g.Size < 0 || g.Offset+g.Size > total {
			return nil, fmt.Errorf("optim: group %s [%d, %d) outside the %d-element buffer", g.Name, g.Offset, g.Offset+g.Size, total)
		}
	}
	return &AdamW[F]{Beta1: beta1, Beta2: beta2, Groups: groups, M: make([]float32, total), V: make([]float32, total), spans: cut(groups)}, nil
}

// Step applies one update to params from grads, with every group's LR multiplied by
// lrFactor (the schedule's value for this step). It allocates nothing: the blocks were cut
// by New and run on kernels/cpu's worker pool.
func (o *AdamW[F]) Step(params, grads []F, lrFactor float64) {
	o.StepScaled(params, grads, lrFactor, 1)
}

// StepScaled is Step on the gradients multiplied by gradScale (ClipFactor's value), in
// the parameters' type, as Clip would have scaled them in place: the update is the same
// bits, and clipping needs no pass of its own over the gradients, which stay unscaled.
func (o *AdamW[F]) StepScaled(params, grads []F, lrFactor, gradScale float64) {
	o.T++
	cpu.ParallelFor(len(o.spans), 1, adamTask[F]{
		o: o, params: params, grads: grads, lrFactor: lrFactor, gradScale: gradScale,
		bc1: 1 - math.Pow(o.Beta1, float64(o.T)),
		bc2: 1 - math.Pow(o.Beta2, float64(o.T)),
	})
}

// adamTask is one Step's loop over o.spans, a value rather than a closure so that handing
// it to the pool allocates nothing.
type adamTask[F kernels.Float] struct {
	o                             *AdamW[F]
	params, grads                 []F
	lrFactor, gradScale, bc1, bc2 float64
}

// Run updates the elements of spans [lo, hi) with kernels/cpu's AdamW (AVX-512 where the
// CPU has it: the same bits as the plain loop).
func (t adamTask[F]) Run(lo, hi int) {
	b1, b2 := t.o.Beta1, t.o.Beta2
	for _, s := range t.o.spans[lo:hi] {
		g := t.o.Groups[s.g]
		lr := g.LR * t.lrFactor
		cpu.AdamW(t.params[s.lo:s.hi], t.grads[s.lo:s.hi], t.o.M[s.lo:s.hi], t.o.V[s.lo:s.hi], cpu.AdamWCoeffs{
			B1: b1, C1: 1 - b1, B2: b2, C2: 1 - b2, Decay: 1 - lr*g.WeightDecay, StepSize: lr / t.bc1,
			BC2Sqrt: math.Sqrt(t.bc2), Eps: g.Eps, GScale: t.gradScale,
		})
	}
}

// block is the unit of parallel work in elements; fixed so that the split of a reduction
// never depends on the number of threads.
const block = 1 << 16

// span is a piece of at most block elements of one group: [lo, hi) of Groups[g].
type span struct{ g, lo, hi int }

// cut splits every group into spans of at most block elements.
func cut(groups []Group) []span {
	var spans []span
	for gi, g := range groups {
		for lo := g.Offset; lo < g.Offset+g.Size; lo += block {
			spans = append(spans, span{gi, lo, min(lo+block, g.Offset+g.Size)})
		}
	}
	return spans
}
