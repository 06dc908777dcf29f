package config

import (
	"github.com/herdml/herd/metap"
	"github.com/herdml/herd/trainer/model"
)

// Default is the configuration a file starts from: every key the file leaves out keeps
// the value here. The model defaults to the tiny preset's shape, so that a config naming
// only its data trains a small model on a CPU.
func Default() Run {
	return Run{
		Name:     "",
		Seed:     1,
		Model:    model.Presets["tiny"],
		Data:     Data{ShuffleSeed: 1},
		Finetune: Finetune{LoRA: defaultLoRA()},
		Train: Train{
			Steps:       1000,
			GlobalBatch: 8,
			MicroBatch:  8,
			Device:      "cpu",
			Precision:   "fp32",
			FP8:         FP8{Recipe: "delayed", History: 16, Margin: 0, Amax: "max"},
			Optim:       Optim{LR: 3e-3, Betas: [2]float64{0.9, 0.95}, Eps: 1e-8, WeightDecay: 0.1, Clip: 1.0},
			Schedule:    Schedule{Warmup: 100, Decay: "cosine", MinLRRatio: 0.1},
			Checkpoint:  Checkpoint{Every: 200, Keep: 3, Dir: "runs"},
			Eval:        Eval{Every: 200, Batches: 8},
		},
		MetaP:    metap.DefaultConfig(),
		Parallel: Parallel{Data: 1},
	}
}
