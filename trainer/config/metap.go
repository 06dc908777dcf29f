package config

import (
	"github.com/herdml/herd/metap"
)

// MetaPShape is the run's target shape for the MetaP rules: the model's widths and depth,
// the tokens of one optimizer step (global_batch × seq_len) and of the whole run.
func (r Run) MetaPShape() metap.Shape {
	m := r.Model
	batch := r.Train.GlobalBatch * m.SeqLen
	return metap.Shape{
		DModel: m.DModel, NLayers: m.NLayers, NHeads: m.NHeads, FFNHidden: m.FFNHidden,
		ExpertHidden: m.MoE.ExpertHidden, Experts: m.MoE.Experts,
		BatchTokens: batch, TrainTokens: float64(r.Train.Steps) * float64(batch),
	}
}

// MetaPTable is the run's per-tensor table, in the order of its Layout (LoRA adapters
// included): the base hyperparameters are train.optim's lr, weight_decay and eps and
// metap.init_std, tuned on the proxy that metap.base describes. r must be valid.
func (r Run) MetaPTable() (metap.Table, error) {
	lay, err := r.Layout()
	if err != nil {
		return metap.Table{}, err
	}
	tensors := make([]metap.Tensor, len(lay.Tensors))
	for i, t := range lay.Tensors {
		tensors[i] = metap.Tensor{Name: t.Name, Shape: t.Shape, Class: t.Class}
	}
	o := r.Train.Optim
	hp := metap.Hyper{LR: o.LR, InitStd: r.MetaP.InitStd, WeightDecay: o.WeightDecay, Eps: o.Eps}
	return metap.Plan(r.MetaP, metap.Shape{}, r.MetaPShape(), hp, tensors)
}
