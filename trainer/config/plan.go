package config

import "github.com/herdml/herd/trainer/model"

// RunPlan is what a run costs: the model's plan for this run's micro-batch, and the
// totals over the run.
type RunPlan struct {
	model.Plan
	Ranks         int     `json:"ranks"`           // data-parallel ranks; memory figures are per rank
	MicroBatch    int     `json:"micro_batch"`     // sequences per rank per forward/backward; sizes the activations
	TokensPerStep int64   `json:"tokens_per_step"` // global_batch × seq_len
	TrainFLOPs    float64 `json:"train_flops"`     // flops_per_token × tokens_per_step × steps
}

// Plan plans r; r must be valid.
func (r Run) Plan() RunPlan {
	p := RunPlan{
		Plan:          model.NewPlan(r.Model, r.Train.MicroBatch),
		Ranks:         r.Parallel.Data,
		MicroBatch:    r.Train.MicroBatch,
		TokensPerStep: int64(r.Train.GlobalBatch) * int64(r.Model.SeqLen),
	}
	p.TrainFLOPs = p.FLOPsPerToken * float64(p.TokensPerStep) * float64(r.Train.Steps)
	return p
}
