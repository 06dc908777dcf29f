package trainer

import (
	"github.com/herdml/herd/kernels/fp8"
	"github.com/herdml/herd/trainer/model"
)

// attachFP8 runs the GEMMs of every hidden and expert matrix (each expert on its own)
// through an fp8.Linear of one Scaling, the run's FP8 scaling state: the precision map of
// docs/fp8.md. Linears that read the same input share its FP8 copy.
func (tr *Trainer) attachFP8() error {
	c := tr.Cfg.Train.FP8
	sc, err := fp8.NewScaling(fp8.Config{Recipe: c.Recipe, History: c.History, Amax: c.Amax, Margin: c.Margin, Pow2: c.Pow2}, tr.opts.Backend)
	if err != nil {
		return err
	}
	tr.Model.SetLinears(func(name string, first model.Linear[float32]) model.Linear[float32] {
		if first != nil {
			return sc.LinearSharingInput(name, first.(*fp8.Linear))
		}
		return sc.Linear(name)
	})
	tr.fp8 = sc
	return nil
}
