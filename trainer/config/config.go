// Package config is a run's configuration: one YAML file describing the model, the data,
// the training recipe, the parametrization and the parallelism. Decoding is strict; every
// error names the file, the key path and what is allowed.
//
// Each field's comment gives its meaning, its default (see Default) and its bounds (see
// Validate); the README's config reference is the same table for users.
//
// Sizes are bounded so that what a run costs can always be counted (its plan never
// wraps to a negative or small number): every size of the model and of the batch is at
// most model.MaxSize (2^31-1), model.n_layers at most model.MaxLayers (4096), a patch
// side and its channels at most model.MaxPatch (4096) each, and the plan's bytes per
// rank (parameters at 16 bytes, activations at 4) at most model.MaxPlanBytes (2^62).
// Within these bounds a run may still not fit the machine: trainer.New compares the
// plan's memory with what the process may use (internal/sysmem) before allocating.
package config

import (
	"github.com/herdml/herd/metap"
	"github.com/herdml/herd/trainer/model"
)

// Run is the whole run configuration.
type Run struct {
	Name     string       `yaml:"name" json:"name"` // run name = workflow ID and folder name; default: the config file's name without extension; [A-Za-z0-9._-], at most 100
	Seed     uint64       `yaml:"seed" json:"seed"` // seeds init and every random choice; default 1
	Model    model.Config `yaml:"model" json:"model"`
	Init     Init         `yaml:"init" json:"init,omitzero"`         // omitzero: configs without it keep their hash
	Finetune Finetune     `yaml:"finetune" json:"finetune,omitzero"` // Hash leaves it out without adapters
	Data     Data         `yaml:"data" json:"data"`
	Train    Train        `yaml:"train" json:"train"`
	MetaP    metap.Config `yaml:"metap" json:"metap"` // see package metap for the keys, their defaults and bounds
	Parallel Parallel     `yaml:"parallel" json:"parallel"`
}

// Init says what a run's weights start from.
type Init struct {
	// From is a herd checkpoint folder (or run folder: its newest valid checkpoint), a
	// `herd export` folder or a Hugging Face Llama folder whose weights the run starts
	// from, with a fresh optimizer, schedule and data order; the model config is the
	// source's (keys set otherwise are refused, seq_len excepted). Default "" = initialise
	// from the MetaP table.
	From string `yaml:"from" json:"from"`
}

// Data says where batches come from. Exactly one of train and synthetic is given.
type Data struct {
	Train       string `yaml:"train" json:"train"`               // glob of text files, a shard manifest, or grpc://host:port/name; default none
	Eval        string `yaml:"eval" json:"eval"`                 // held-out data, same forms as train; default "" = no eval
	Synthetic   bool   `yaml:"synthetic" json:"synthetic"`       // random tokens, for benchmarks; default false
	ShuffleSeed uint64 `yaml:"shuffle_seed" json:"shuffle_seed"` // order of samples in each epoch; default 1
}

// Train is the training recipe.
type Train struct {
	Steps       int        `yaml:"steps" json:"steps"`               // optimizer steps; default 1000; 1 to 2^31-1
	GlobalBatch int        `yaml:"global_batch" json:"global_batch"` // sequences per optimizer step, all ranks together; default 8; a multiple of micro_batch * parallel.data, at most 2^31-1
	MicroBatch  int        `yaml:"micro_batch" json:"micro_batch"`   // sequences per rank per forward/backward; default 8; 1 to 2^31-1, and the plan within 2^62 bytes
	Device      string     `yaml:"device" json:"device,omitempty"`   // cpu | cuda | cuda:N: the backend each rank runs on; default cpu
	Precision   string     `yaml:"precision" json:"precision"`       // fp32 | fp8; default fp32
	FP8         FP8        `yaml:"fp8" json:"fp8"`
	Optim       Optim      `yaml:"optim" json:"optim"`
	Schedule    Schedule   `yaml:"schedule" json:"schedule"`
	Checkpoint  Checkpoint `yaml:"checkpoint" json:"checkpoint"`
	Eval        Eval       `yaml:"eval" json:"eval"`
}

// FP8 configures FP8 scaling (used when precision is fp8).
type FP8 struct {
	Recipe  string `yaml:"recipe" json:"recipe"`   // delayed | current | blockwise; default delayed
	History int    `yaml:"history" json:"history"` // amax history length (delayed); default 16; 1 to 65536
	Margin  int    `yaml:"margin" json:"margin"`   // scale = fp8_max / amax / 2^margin; default 0; >= 0
	Pow2    bool   `yaml:"pow2" json:"pow2"`       // round scales down to powers of two; default false
	Amax    string `yaml:"amax" json:"amax"`       // delayed: the history's max | most_recent amax sets the scale; default max
	// GradFP32 keeps the output gradients in float32 in the backward GEMMs (TE's
	// override_linear_precision for dgrad and wgrad); default false. omitempty keeps the
	// hash of configs written before it.
	GradFP32 bool `yaml:"grad_fp32" json:"grad_fp32,omitempty"`
	// GradE4M3 quantizes the gradients to E4M3 instead of E5M2 (TE's Format.E4M3, what
	// DeepSeek-V3 uses with per-tile scales); default false, omitted from the hash when false.
	GradE4M3 bool `yaml:"grad_e4m3" json:"grad_e4m3,omitempty"`
}

// Optim is AdamW with global-norm clipping.
type Optim struct {
	LR          float64    `yaml:"lr" json:"lr"`                     // peak learning rate (base value before per-tensor rules); default 3e-3; > 0
	Betas       [2]float64 `yaml:"betas" json:"betas"`               // Adam moment decay rates; default [0.9, 0.95]; each in [0, 1)
	Eps         float64    `yaml:"eps" json:"eps"`                   // Adam epsilon; default 1e-8; > 0
	WeightDecay float64    `yaml:"weight_decay" json:"weight_decay"` // decoupled weight decay (matrices only); default 0.1; >= 0
	Clip        float64    `yaml:"clip" json:"clip"`                 // global gradient norm limit; 0 = off; default 1.0; >= 0
}

// Schedule shapes the learning rate over the run; see optim.Schedule for the formulas.
type Schedule struct {
	Warmup     int     `yaml:"warmup" json:"warmup"`             // linear warmup steps; default 100; >= 0
	Decay      string  `yaml:"decay" json:"decay"`               // cosine | linear | wsd | constant; default cosine
	DecaySteps int     `yaml:"decay_steps" json:"decay_steps"`   // wsd: length of the final decay; 0 = 20% of steps; default 0; in [0, steps]
	MinLRRatio float64 `yaml:"min_lr_ratio" json:"min_lr_ratio"` // final LR as a fraction of the peak; default 0.1; in [0, 1]
	// DecayStart places a wsd decay at a step instead of by its length: the LR stays at
	// the peak through this step and decays linearly to min_lr_ratio at train.steps, so
	// that a run extended on resume keeps its decay where it was; it may lie past
	// train.steps (the decay is reached once a resume extends the run). Default 0 (use
	// decay_steps); not with decay_steps. omitempty keeps the hash of configs before it.
	DecayStart int `yaml:"decay_start" json:"decay_start,omitempty"`
	// Start is the step a restarted schedule begins after (`herd resume --schedule
	// restart` sets it): the curve runs from there to train.steps. Default 0; in [0, steps).
	Start int `yaml:"start" json:"start,omitempty"`
}

// Checkpoint says when and where checkpoints are written.
type Checkpoint struct {
	Every int    `yaml:"every" json:"every"` // steps between checkpoints; the last step always checkpoints; 0 = only the last; default 200; >= 0
	Keep  int    `yaml:"keep" json:"keep"`   // newest checkpoints kept; default 3; > 0
	Dir   string `yaml:"dir" json:"dir"`     // root folder or s3://bucket/prefix; a run writes under dir/name; default runs; not empty
	// Async is how many checkpoints may wait for their upload while training goes on: the
	// state is copied to host memory at the step boundary and written in the background
	// (torchtitan's async_mode), one host copy of weights and moments per checkpoint
	// waiting. 0 writes each checkpoint before the next step; default 0; 0..8.
	Async int `yaml:"async" json:"async"`
}

// Eval configures held-out evaluation.
type Eval struct {
	Every   int `yaml:"every" json:"every"`     // steps between evaluations; 0 = only at the end; default 200; >= 0
	Batches int `yaml:"batches" json:"batches"` // micro-batches per evaluation; default 8; > 0
}

// Parallel is the parallelism layout.
type Parallel struct {
	Data int `yaml:"data" json:"data"` // data-parallel ranks; default 1; > 0
}
