package trainer

import (
	"context"

	"github.com/herdml/herd/kernels/fp8"
	"github.com/herdml/herd/trainer/collective"
	"github.com/herdml/herd/trainer/model"
)

// attachFP8 runs the GEMMs of every hidden and expert matrix (each expert on its own)
// through an fp8.Linear of one Scaling, the run's FP8 scaling state: the precision map of
// docs/fp8.md. Linears that read the same input share its FP8 copy; the other activations
// that the backward reads are kept as E4M3 with a scale per 1×128 tile (model.SetCodec).
func (tr *Trainer) attachFP8() error {
	c := tr.Cfg.Train.FP8
	sc, err := fp8.NewScaling(fp8.Config{Recipe: c.Recipe, History: c.History, Amax: c.Amax, Margin: c.Margin, Pow2: c.Pow2, GradFP32: c.GradFP32, GradE4M3: c.GradE4M3}, tr.opts.Backend)
	if err != nil {
		return err
	}
	tr.Model.SetLinears(func(name string, first model.Linear[float32]) model.Linear[float32] {
		if first != nil {
			return sc.LinearSharingInput(name, first.(*fp8.Linear))
		}
		return sc.Linear(name)
	})
	tr.Model.SetCodec(fp8.NewTileCodec(tr.opts.Backend))
	sc.Reserve(tr.Model.LinearOperandMax())
	// Each rank quantizes only its own micro-batches; taking the maximum of every amax over
	// the ranks before the scales are updated keeps the scales, and so the weights, the same
	// on every rank (tr.dp is set once the ranks are started, after attachFP8).
	sc.SetReduce(func(amax []float32) error {
		if tr.dp == nil {
			return nil
		}
		return tr.dp.group.AllReduce(context.Background(), amax, collective.Max)
	})
	tr.fp8 = sc
	return nil
}
