// Package config is a run's configuration: one YAML file describing the model, the data,
// the training recipe, the parametrization and the parallelism. Decoding is strict; every
// error names the file, the key path and what is allowed.
package config

import (
	"github.com/herdml/herd/trainer/model"
)

// Run is the whole run configuration.
type Run struct {
	Name     string       `yaml:"name" json:"name"` // run name = workflow ID
	Seed     uint64       `yaml:"seed" json:"seed"` // seeds init and every random choice
	Model    model.Config `yaml:"model" json:"model"`
	Data     Data         `yaml:"data" json:"data"`
	Train    Train        `yaml:"train" json:"train"`
	MetaP    MetaP        `yaml:"metap" json:"metap"`
	Parallel Parallel     `yaml:"parallel" json:"parallel"`
}

// Data says where batches come from.
type Data struct {
	Train       string `yaml:"train" json:"train"`               // glob of text files, a shard manifest, or grpc://host:port/name
	Eval        string `yaml:"eval" json:"eval"`                 // held-out data, same forms as train; empty = no eval
	Synthetic   bool   `yaml:"synthetic" json:"synthetic"`       // random tokens, for benchmarks
	ShuffleSeed uint64 `yaml:"shuffle_seed" json:"shuffle_seed"` // order of samples in each epoch
}

// Train is the training recipe.
type Train struct {
	Steps       int        `yaml:"steps" json:"steps"`               // optimizer steps
	GlobalBatch int        `yaml:"global_batch" json:"global_batch"` // sequences per optimizer step, all ranks together
	MicroBatch  int        `yaml:"micro_batch" json:"micro_batch"`   // sequences per rank per forward/backward
	Precision   string     `yaml:"precision" json:"precision"`       // fp32 | fp8
	FP8         FP8        `yaml:"fp8" json:"fp8"`
	Optim       Optim      `yaml:"optim" json:"optim"`
	Schedule    Schedule   `yaml:"schedule" json:"schedule"`
	Checkpoint  Checkpoint `yaml:"checkpoint" json:"checkpoint"`
	Eval        Eval       `yaml:"eval" json:"eval"`
}

// FP8 configures FP8 scaling (used when precision is fp8).
type FP8 struct {
	Recipe  string `yaml:"recipe" json:"recipe"`   // delayed | current
	History int    `yaml:"history" json:"history"` // amax history length (delayed)
	Margin  int    `yaml:"margin" json:"margin"`   // scale = fp8_max / amax / 2^margin
	Pow2    bool   `yaml:"pow2" json:"pow2"`       // round scales down to powers of two
}

// Optim is AdamW with global-norm clipping.
type Optim struct {
	LR          float64    `yaml:"lr" json:"lr"`                     // peak learning rate (base value before per-tensor rules)
	Betas       [2]float64 `yaml:"betas" json:"betas"`               // Adam moment decay rates
	Eps         float64    `yaml:"eps" json:"eps"`                   // Adam epsilon
	WeightDecay float64    `yaml:"weight_decay" json:"weight_decay"` // decoupled weight decay (matrices only)
	Clip        float64    `yaml:"clip" json:"clip"`                 // global gradient norm limit; 0 = off
}

// Schedule shapes the learning rate over the run.
type Schedule struct {
	Warmup     int     `yaml:"warmup" json:"warmup"`             // linear warmup steps
	Decay      string  `yaml:"decay" json:"decay"`               // cosine | linear | wsd | constant
	DecaySteps int     `yaml:"decay_steps" json:"decay_steps"`   // wsd: length of the final decay; 0 = 20% of steps
	MinLRRatio float64 `yaml:"min_lr_ratio" json:"min_lr_ratio"` // final LR as a fraction of the peak
}

// Checkpoint says when and where checkpoints are written.
type Checkpoint struct {
	Every int    `yaml:"every" json:"every"` // steps between checkpoints; the last step always checkpoints
	Keep  int    `yaml:"keep" json:"keep"`   // newest checkpoints kept
	Dir   string `yaml:"dir" json:"dir"`     // root folder; a run writes under dir/name
}

// Eval configures held-out evaluation.
type Eval struct {
	Every   int `yaml:"every" json:"every"`     // steps between evaluations; 0 = only at the end
	Batches int `yaml:"batches" json:"batches"` // micro-batches per evaluation
}

// MetaP selects the parametrization; see package metap.
type MetaP struct {
	Mode            string     `yaml:"mode" json:"mode"` // sp | mup | metap
	Base            MetaPBase  `yaml:"base" json:"base"`
	DepthAlpha      float64    `yaml:"depth_alpha" json:"depth_alpha"`
	HorizonExponent float64    `yaml:"horizon_exponent" json:"horizon_exponent"`
	Overrides       []Override `yaml:"overrides" json:"overrides"`
}

// MetaPBase is the proxy shape the hyperparameters were tuned on.
type MetaPBase struct {
	DModel      int     `yaml:"d_model" json:"d_model"`
	NLayers     int     `yaml:"n_layers" json:"n_layers"`
	BatchTokens int     `yaml:"batch_tokens" json:"batch_tokens"`
	TrainTokens float64 `yaml:"train_tokens" json:"train_tokens"`
}

// Override multiplies the rules' values for tensors whose name matches a glob.
type Override struct {
	Match   string  `yaml:"match" json:"match"`
	LRMult  float64 `yaml:"lr_mult" json:"lr_mult"`
	InitMul float64 `yaml:"init_mult" json:"init_mult"`
}

// Parallel is the parallelism layout.
type Parallel struct {
	Data int `yaml:"data" json:"data"` // data-parallel ranks
}
