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
	"runtime"
	"sync"

	"github.com/herdml/herd/kernels"
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
//	p = p - lr·wd·p - lr · (m / (1-β1ᵗ)) / (sqrt(v / (1-β2ᵗ)) + eps)
//
// lr is the group's LR times the schedule factor. The moments are kept in float32 whatever
// the parameter type: they are half of the optimizer's memory and float32 is what every
// reference implementation stores. Arithmetic is done in float64.
type AdamW[F kernels.Float] struct {
	Beta1, Beta2 float64
	Groups       []Group
	M, V         []float32 // first and second moments, same layout as the parameters
	T            int64     // updates applied so far; the bias correction uses T+1 next
}

// New returns an AdamW over total elements with zero moments. Groups must be disjoint and
// inside [0, total).
func New[F kernels.Float](total int, groups []Group, beta1, beta2 float64) (*AdamW[F], error) {
	for _, g := range groups {
		if g.Offset < 0 || g.Size < 0 || g.Offset+g.Size > total {
			return nil, fmt.Errorf("optim: group %s [%d, %d) outside the %d-element buffer", g.Name, g.Offset, g.Offset+g.Size, total)
		}
	}
	return &AdamW[F]{Beta1: beta1, Beta2: beta2, Groups: groups, M: make([]float32, total), V: make([]float32, total)}, nil
}

// Step applies one update to params from grads, with every group's LR multiplied by
// lrFactor (the schedule's value for this step).
func (o *AdamW[F]) Step(params, grads []F, lrFactor float64) {
	o.T++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.T))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.T))
	b1, b2 := o.Beta1, o.Beta2
	forBlocks(o.Groups, func(g Group, lo, hi int) {
		lr := g.LR * lrFactor
		decay := 1 - lr*g.WeightDecay
		for i := lo; i < hi; i++ {
			gr := float64(grads[i])
			m := b1*float64(o.M[i]) + (1-b1)*gr
			v := b2*float64(o.V[i]) + (1-b2)*gr*gr
			o.M[i], o.V[i] = float32(m), float32(v)
			p := float64(params[i]) * decay
			params[i] = F(p - lr*(m/bc1)/(math.Sqrt(v/bc2)+g.Eps))
		}
	})
}

// block is the unit of parallel work in elements; fixed so that the split of a reduction
// never depends on the number of threads.
const block = 1 << 16

// forBlocks calls body on every group's elements in spans of at most block elements,
// spread over GOMAXPROCS goroutines. body must touch only elements in [lo, hi).
func forBlocks(groups []Group, body func(g Group, lo, hi int)) {
	type span struct {
		g      int
		lo, hi int
	}
	var spans []span
	for gi, g := range groups {
		for lo := g.Offset; lo < g.Offset+g.Size; lo += block {
			spans = append(spans, span{gi, lo, min(lo+block, g.Offset+g.Size)})
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(spans))
	if workers <= 1 {
		for _, s := range spans {
			body(groups[s.g], s.lo, s.hi)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(spans); i += workers {
				body(groups[spans[i].g], spans[i].lo, spans[i].hi)
			}
		}()
	}
	wg.Wait()
}
