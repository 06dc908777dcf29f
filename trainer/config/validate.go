package config

import (
	"fmt"
	"math"
	"reflect"
	"regexp"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/trainer/model"
	"github.com/herdml/herd/trainer/optim"
)

// maxFP8History bounds the amaxes kept per scaled tensor: 64 times Transformer Engine's
// default of 1024, and small enough that the histories never matter for memory.
const maxFP8History = 1 << 16

// namePattern keeps run names usable as a Temporal workflow ID and as a folder name.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// ValidName reports whether s may be a run's name (the key name).
func ValidName(s string) bool { return namePattern.MatchString(s) }

// Validate checks every value and every relation between values. Errors are user errors
// whose Where is the key path (Load prefixes the file) and whose message says what is
// allowed.
func (r Run) Validate() error {
	if err := finite(reflect.ValueOf(r), ""); err != nil {
		return err
	}
	if !namePattern.MatchString(r.Name) {
		return usererr.New("name", "want 1 to 100 of A-Z a-z 0-9 . _ - starting with a letter or digit, got %q", r.Name)
	}
	if err := r.Model.Validate(); err != nil {
		return err
	}
	if r.Init.From != "" && r.Model.Preset != "" {
		return usererr.New("model.preset", "%q cannot be combined with init.from: the model config is the source's", r.Model.Preset)
	}
	if err := r.Data.validate(); err != nil {
		return err
	}
	if r.Parallel.Data <= 0 {
		return usererr.New("parallel.data", "must be a positive integer, got %d", r.Parallel.Data)
	}
	if err := r.Train.validate(r.Parallel.Data); err != nil {
		return err
	}
	if err := r.checkActivations(); err != nil {
		return err
	}
	if err := r.MetaP.Validate(); err != nil {
		return err
	}
	return r.Finetune.validate(r)
}

// checkActivations refuses a micro-batch whose activations, with the model's weights,
// gradients and optimizer state, would pass model.MaxPlanBytes: the plan counts them in
// integers, which would wrap. (The model's own validation bounds the parameters.)
func (r Run) checkActivations() error {
	values := model.ActivationValues(r.Model, r.Train.MicroBatch)
	if b := model.ParamBytes*model.ParamCount(r.Model) + model.ActivationBytes*values; b > model.MaxPlanBytes {
		return usererr.New("train.micro_batch", "micro_batch × model.seq_len = %d × %d tokens need %.3g activation values, "+
			"%.3g bytes per rank with the parameters, more than herd can plan for (%.3g, 2^62); reduce train.micro_batch or model.seq_len",
			r.Train.MicroBatch, r.Model.SeqLen, values, b, float64(model.MaxPlanBytes))
	}
	return nil
}

func (d Data) validate() error {
	switch {
	case d.Synthetic && d.Train != "":
		return usererr.New("data.train", "give either data.train or data.synthetic: true, not both")
	case !d.Synthetic && d.Train == "":
		return usererr.New("data.train", "required: a glob of text files, a shard manifest, grpc://host:port/name, or set data.synthetic: true")
	}
	return nil
}

// maxAsync bounds train.checkpoint.async: each waiting checkpoint holds a host copy of the
// weights and optimizer moments.
const maxAsync = 8

func (t Train) validate(ranks int) error {
	for _, f := range []struct {
		key string
		v   int
	}{
		{"train.steps", t.Steps}, {"train.global_batch", t.GlobalBatch}, {"train.micro_batch", t.MicroBatch},
		{"train.checkpoint.keep", t.Checkpoint.Keep}, {"train.eval.batches", t.Eval.Batches},
	} {
		if f.v <= 0 {
			return usererr.New(f.key, "must be a positive integer, got %d", f.v)
		}
		if f.v > model.MaxSize {
			return usererr.New(f.key, "must be at most %d, got %d", model.MaxSize, f.v)
		}
	}
	if per := t.MicroBatch * ranks; t.GlobalBatch%per != 0 {
		return usererr.New("train.global_batch", "must be a multiple of micro_batch × parallel.data = %d × %d = %d, got %d",
			t.MicroBatch, ranks, per, t.GlobalBatch)
	}
	if _, err := device.Parse(t.Device); err != nil {
		return err
	}
	switch t.Precision {
	case "fp32", "fp8":
	default:
		return usererr.New("train.precision", "unknown precision %q; allowed: fp32, fp8", t.Precision)
	}
	switch t.FP8.Recipe {
	case "delayed", "current", "blockwise":
	default:
		return usererr.New("train.fp8.recipe", "unknown recipe %q; allowed: delayed, current, blockwise", t.FP8.Recipe)
	}
	if t.FP8.History <= 0 || t.FP8.History > maxFP8History {
		return usererr.New("train.fp8.history", "must be a positive integer of at most %d, got %d", maxFP8History, t.FP8.History)
	}
	switch t.FP8.Amax {
	case "max", "most_recent":
	default:
		return usererr.New("train.fp8.amax", "unknown amax algorithm %q; allowed: max, most_recent", t.FP8.Amax)
	}
	if t.FP8.Margin < 0 {
		return usererr.New("train.fp8.margin", "must be at least 0, got %d", t.FP8.Margin)
	}
	o := t.Optim
	if !(o.LR > 0) {
		return usererr.New("train.optim.lr", "must be positive, got %g", o.LR)
	}
	for _, b := range o.Betas {
		if !(b >= 0 && b < 1) {
			return usererr.New("train.optim.betas", "each must be in [0, 1), got [%g, %g]", o.Betas[0], o.Betas[1])
		}
	}
	if !(o.Eps > 0) {
		return usererr.New("train.optim.eps", "must be positive, got %g", o.Eps)
	}
	if !(o.WeightDecay >= 0) {
		return usererr.New("train.optim.weight_decay", "must be at least 0, got %g", o.WeightDecay)
	}
	if !(o.Clip >= 0) {
		return usererr.New("train.optim.clip", "must be at least 0 (0 = no clipping), got %g", o.Clip)
	}
	if err := t.LRSchedule().Validate(); err != nil {
		return err
	}
	if t.Checkpoint.Every < 0 {
		return usererr.New("train.checkpoint.every", "must be at least 0 (0 = only at the end), got %d", t.Checkpoint.Every)
	}
	if t.Checkpoint.Dir == "" {
		return usererr.New("train.checkpoint.dir", "must name a folder, got an empty string")
	}
	if t.Checkpoint.Async < 0 || t.Checkpoint.Async > maxAsync {
		return usererr.New("train.checkpoint.async", "must be 0 (write before the next step) to %d checkpoints uploading in the background, got %d", maxAsync, t.Checkpoint.Async)
	}
	if t.Eval.Every < 0 {
		return usererr.New("train.eval.every", "must be at least 0 (0 = only at the end), got %d", t.Eval.Every)
	}
	return nil
}

// LRSchedule is the learning-rate schedule the optimizer follows.
func (t Train) LRSchedule() optim.Schedule {
	s := t.Schedule
	return optim.Schedule{Steps: t.Steps, Warmup: s.Warmup, Decay: s.Decay, DecaySteps: s.DecaySteps,
		DecayStart: s.DecayStart, MinLRRatio: s.MinLRRatio, Start: s.Start}
}

// finite rejects NaN and ±Inf anywhere in v, once for every float key, so that no bound
// check below has to remember that NaN fails every comparison.
func finite(v reflect.Value, key string) error {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return usererr.New(key, "must be a finite number, got %g", f)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if err := finite(v.Field(i), join(key, yamlName(v.Type().Field(i)))); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := finite(v.Index(i), fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
	}
	return nil
}
