// Package optim is herd's optimizer: AdamW over the flat parameter buffer with a learning
// rate, weight decay and eps per tensor (the MetaP table decides them), global-norm
// gradient clipping, and the learning-rate schedules.
//
// The numbers are computed by the backend (kernels.Backend's AdamW and SumSquares), on
// buffers it owns; this package decides the spans and the coefficients. Every result is
// deterministic: element-wise updates do not depend on how the work is split, and the one
// reduction (the gradient norm) is summed in float64 over fixed blocks in a fixed order,
// so the thread count never changes a bit.
package optim

import (
	"fmt"
	"math"

	"github.com/herdml/herd/kernels"
)

// Group is one tensor's span of the flat buffers and its hyperparameters.
type Group struct {
	Name        string // tensor name, for messages and checkpoint names
	Offset      int    // first element in the flat gradients and moments
	Param       int    // first element in the flat parameters, which may also hold frozen tensors
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
// PyTorch (kernels.AdamWCoeffs gives the exact operations).
type AdamW[F kernels.Float] struct {
	Beta1, Beta2 float64
	Groups       []Group
	M, V         kernels.Buf[float32] // first and second moments, same layout as the parameters, in the backend
	T            int64                // updates applied so far; the bias correction uses T+1 next

	be kernels.Backend[F]
	// segs are the runs of Groups whose parameters lie as their gradients do (one run
	// without frozen tensors), cut into blocks once, by New, and coeffs one AdamWCoeffs per
	// group, refilled by every step, so that a step allocates nothing: a group's LR, weight
	// decay and eps may change between steps, its offsets and size not.
	segs   []segment
	coeffs []kernels.AdamWCoeffs
}

// segment is one backend AdamW call: n elements from param in the parameters and from
// grad in the gradients and moments, its spans relative to them.
type segment struct {
	param, grad, n int
	spans          []kernels.Span
}

// New returns an AdamW over total elements of gradients (and moments, allocated from be
// and zero), which be then updates. Groups must be disjoint and inside [0, total) of the
// gradients, and ordered by Offset.
func New[F kernels.Float](be kernels.Backend[F], total int, groups []Group, beta1, beta2 float64) (*AdamW[F], error) {
	for i, g := range groups {
		if g.Offset < 0 || g.Size < 0 || g.Param < 0 || g.Offset+g.Size > total || (i > 0 && g.Offset < groups[i-1].Offset+groups[i-1].Size) {
			return nil, fmt.Errorf("optim: group %s [%d, %d) outside the %d-element buffer or before the previous group", g.Name, g.Offset, g.Offset+g.Size, total)
		}
	}
	return &AdamW[F]{
		Beta1: beta1, Beta2: beta2, Groups: groups,
		M: kernels.Alloc[float32](be, total), V: kernels.Alloc[float32](be, total),
		be: be, segs: segments(groups), coeffs: make([]kernels.AdamWCoeffs, len(groups)),
	}, nil
}

// Step applies one update to params from grads, with every group's LR multiplied by
// lrFactor (the schedule's value for this step).
func (o *AdamW[F]) Step(params, grads kernels.Buf[F], lrFactor float64) {
	o.StepScaled(params, grads, lrFactor, 1)
}

// StepScaled is Step on the gradients multiplied by gradScale (ClipFactor's value), in
// the parameters' type, as Clip would have scaled them in place: the update is the same
// bits, and clipping needs no pass of its own over the gradients, which stay unscaled.
// It is one call of the backend's AdamW over the spans New cut, and allocates nothing.
func (o *AdamW[F]) StepScaled(params, grads kernels.Buf[F], lrFactor, gradScale float64) {
	o.T++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.T))
	bc2Sqrt := math.Sqrt(1 - math.Pow(o.Beta2, float64(o.T)))
	b1, b2 := o.Beta1, o.Beta2
	for i, g := range o.Groups {
		lr := g.LR * lrFactor
		o.coeffs[i] = kernels.AdamWCoeffs{
			B1: b1, C1: 1 - b1, B2: b2, C2: 1 - b2, Decay: 1 - lr*g.WeightDecay, StepSize: lr / bc1,
			BC2Sqrt: bc2Sqrt, Eps: g.Eps, GScale: gradScale,
		}
	}
	for _, s := range o.segs {
		g := func(b kernels.Buf[float32]) kernels.Buf[float32] { return b.Slice(s.grad, s.grad+s.n) }
		o.be.AdamW(params.Slice(s.param, s.param+s.n), grads.Slice(s.grad, s.grad+s.n), g(o.M), g(o.V), s.spans, o.coeffs)
	}
}

// block is the most elements of one span: the unit a backend may hand to one thread.
const block = 1 << 16

// segments groups the groups into runs that are contiguous in both the parameters and
// the gradients, and splits every group into spans of at most block elements.
func segments(groups []Group) []segment {
	var segs []segment
	for gi, g := range groups {
		if n := len(segs); n == 0 || segs[n-1].param+segs[n-1].n != g.Param || segs[n-1].grad+segs[n-1].n != g.Offset {
			segs = append(segs, segment{param: g.Param, grad: g.Offset})
		}
		s := &segs[len(segs)-1]
		for lo := g.Offset; lo < g.Offset+g.Size; lo += block {
			s.spans = append(s.spans, kernels.Span{Lo: lo - s.grad, Hi: min(lo+block, g.Offset+g.Size) - s.grad, Group: gi})
		}
		s.n = g.Offset + g.Size - s.grad
	}
	return segs
}
