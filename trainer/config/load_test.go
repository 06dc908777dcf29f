package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/metap"
	"github.com/herdml/herd/trainer/model"
)

// sketch is the design's config sketch (a run using every section), which every release
// must keep loading.
const sketch = `
name: tiny-go
seed: 1
model:
  preset: tiny
  vocab_size: 256
  d_model: 128
  n_layers: 4
  n_heads: 4
  n_kv_heads: 2
  ffn_hidden: 384
  seq_len: 256
  rope_theta: 500000
  nope_every: 4
  moe: {experts: 4, top_k: 1, shared_expert: true, every: 2, expert_hidden: 256, aux_loss: 0.01}
  vision: {patch: 4, channels: 1}
data:
  train: shards/go/manifest.json
  eval: shards/go-eval/manifest.json
  shuffle_seed: 7
train:
  steps: 2000
  global_batch: 16
  micro_batch: 8
  precision: fp32
  fp8: {recipe: delayed, history: 16, margin: 0, pow2: false}
  optim: {lr: 3.0e-3, betas: [0.9, 0.95], eps: 1.0e-8, weight_decay: 0.1, clip: 1.0}
  schedule: {warmup: 100, decay: cosine, min_lr_ratio: 0.1}
  checkpoint: {every: 200, keep: 3, dir: runs}
  eval: {every: 200, batches: 8}
metap:
  mode: metap
  base: {d_model: 64, n_layers: 2, batch_tokens: 4096, train_tokens: 4.0e6}
  depth_alpha: 1.0
  horizon_exponent: 0.3
  overrides: [{match: "layers.*.attn.*", lr_mult: 0.5}]
parallel:
  data: 1
`

func TestLoadReadsTheSketch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(path, []byte(sketch), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "tiny-go" || r.Data.ShuffleSeed != 7 || r.Train.GlobalBatch != 16 || r.Model.Vision.Patch != 4 ||
		r.MetaP.Mode != "metap" || r.MetaP.Base.TrainTokens != 4e6 || r.Train.Optim.Betas != [2]float64{0.9, 0.95} {
		t.Fatalf("values not read: %+v", r)
	}
	if want := []metap.Override{{Match: "layers.*.attn.*", LRMult: 0.5}}; !reflect.DeepEqual(r.MetaP.Overrides, want) {
		t.Fatalf("overrides %+v, want %+v", r.MetaP.Overrides, want)
	}
	// Keys the sketch leaves out keep their defaults.
	if r.Model.NormEps != 1e-5 || r.Train.Schedule.DecaySteps != 0 || r.MetaP.InitStd != 0.02 {
		t.Fatalf("defaults lost: norm_eps %g, decay_steps %d, init_std %g", r.Model.NormEps, r.Train.Schedule.DecaySteps, r.MetaP.InitStd)
	}
}

func TestDefaultsFillEveryKeyLeftOut(t *testing.T) {
	r, err := Parse("runs/smoke.yaml", []byte("data: {synthetic: true}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Name = "smoke" // from the file name
	want.Data.Synthetic = true
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
	if err := Default().Validate(); err == nil || !strings.Contains(err.Error(), "name") {
		t.Fatalf("Default() without a name validated: %v", err)
	}
}

func TestPresetThenFileThenSets(t *testing.T) {
	src := "model: {preset: small, d_model: 512, moe: {experts: 16}}\ndata: {synthetic: true}\n"
	r, err := Parse("a.yaml", []byte(src), []string{"model.n_layers=3", "train.steps=2e3", "train.optim.betas=[0.8, 0.9]", "train.optim.lr=1e-4"})
	if err != nil {
		t.Fatal(err)
	}
	want := model.Presets["small"]
	want.Preset, want.DModel, want.MoE.Experts, want.NLayers = "small", 512, 16, 3
	if r.Model != want {
		t.Fatalf("model %+v, want %+v", r.Model, want)
	}
	if r.Train.Optim.Betas != [2]float64{0.8, 0.9} || r.Train.Optim.LR != 1e-4 || r.Train.Steps != 2000 {
		t.Fatalf("sets not applied: %+v", r.Train.Optim)
	}
	// A preset given by --set replaces the file's, and the file's model keys still apply.
	r, err = Parse("a.yaml", []byte(src), []string{"model.preset=tiny"})
	if err != nil {
		t.Fatal(err)
	}
	want = model.Presets["tiny"]
	want.Preset, want.DModel, want.MoE.Experts = "tiny", 512, 16
	if r.Model != want {
		t.Fatalf("model %+v, want %+v", r.Model, want)
	}
}

// TestBadInput holds one case per class of mistake: each must be a user error located at
// the file (or --set) and key, saying what is allowed.
func TestBadInput(t *testing.T) {
	const ok = "data: {synthetic: true}\n"
	for _, c := range []struct {
		name, src string
		sets      []string
		where     string // usererr.Error.Where
		what      string // a part of the message
	}{
		{"unknown key", ok + "train: {optim: {lrr: 1}}", nil, "r.yaml: train.optim.lrr", "allowed at train.optim: lr, betas, eps, weight_decay, clip"},
		{"unknown top key", ok + "modle: {}", nil, "r.yaml: modle", "allowed at the top level: name, seed, model"},
		{"unknown set key", ok, []string{"train.optim.lrr=1"}, "--set train.optim.lrr", "allowed at train.optim"},
		{"set without =", ok, []string{"train.steps"}, "--set train.steps", "want key.path=value"},
		{"wrong type", ok + "model: {d_model: big}", nil, "r.yaml: model.d_model", `want an integer, got "big"`},
		{"mapping for a scalar", ok + "seed: {a: 1}", nil, "r.yaml: seed", "want a non-negative integer, got a mapping"},
		{"scalar for a mapping", ok + "train: 5", nil, "r.yaml: train", "want a mapping with keys steps, global_batch"},
		{"fraction for an integer", ok + "train: {steps: 1.5}", nil, "r.yaml: train.steps", `want an integer, got "1.5"`},
		{"list too long", ok + "train: {optim: {betas: [0.9, 0.95, 0.99]}}", nil, "r.yaml: train.optim.betas", "want a list of 2 items, each a number, got a list of 3 items"},
		{"key twice", ok + "seed: 1\nseed: 2", nil, "r.yaml: seed", "key given twice"},
		{"zero size", ok + "model: {d_model: 0}", nil, "r.yaml: model.d_model", "must be a positive integer, got 0"},
		{"negative size", ok + "model: {n_layers: -2}", nil, "r.yaml: model.n_layers", "must be a positive integer, got -2"},
		{"negative size by set", ok, []string{"train.steps=-1"}, "--set train.steps", "must be a positive integer, got -1"},
		{"bad list item by set", ok, []string{"metap.overrides=[{match: '['}]"}, "--set metap.overrides[0].match", "want a glob"},
		{"heads do not divide d_model", ok + "model: {d_model: 100, n_heads: 8}", nil, "r.yaml: model.n_heads", "must divide d_model (100)"},
		{"kv heads do not divide heads", ok + "model: {n_heads: 4, n_kv_heads: 3}", nil, "r.yaml: model.n_kv_heads", "must divide n_heads (4)"},
		{"top_k above experts", ok + "model: {moe: {experts: 2, top_k: 3}}", nil, "r.yaml: model.moe.top_k", "must be at most experts (2)"},
		{"unknown preset", ok + "model: {preset: huge}", nil, "r.yaml: model.preset", "allowed: maverick, scout, small, tiny"},
		{"batch not divisible", ok + "train: {global_batch: 12, micro_batch: 8}", nil, "r.yaml: train.global_batch", "multiple of micro_batch × parallel.data"},
		{"precision", ok + "train: {precision: bf16}", nil, "r.yaml: train.precision", "allowed: fp32, fp8"},
		{"device", ok + "train: {device: tpu}", nil, "r.yaml: train.device", "allowed: cpu, cuda, cuda:N"},
		{"device by set", ok, []string{"train.device=cuda:-1"}, "--set train.device", "allowed: cpu, cuda, cuda:N"},
		{"fp8 amax", ok + "train: {fp8: {amax: mean}}", nil, "r.yaml: train.fp8.amax", "allowed: max, most_recent"},
		{"fp8 recipe", ok, []string{"train.fp8.recipe=tiles"}, "--set train.fp8.recipe", "allowed: delayed, current, blockwise"},
		{"fp8 grad_e4m3", ok + "train: {fp8: {recipe: blockwise, grad_e4m3: yes please}}", nil, "r.yaml: train.fp8.grad_e4m3", "want"},
		{"schedule", ok + "train: {schedule: {decay: exp}}", nil, "r.yaml: train.schedule.decay", "allowed: cosine, linear, wsd, constant"},
		{"NaN", ok + "model: {moe: {aux_loss: .nan}}", nil, "r.yaml: model.moe.aux_loss", "must be a finite number"},
		{"no data", "seed: 3", nil, "r.yaml: data.train", "required"},
		{"metap mode", ok + "metap: {mode: ntk}", nil, "r.yaml: metap.mode", "allowed: sp, mup, metap"},
		{"override glob", ok + "metap: {overrides: [{match: '[', lr_mult: 2}]}", nil, "r.yaml: metap.overrides[0].match", "want a glob"},
		{"bad name", ok + "name: my run", nil, "r.yaml: name", "A-Z a-z 0-9"},
		{"two documents", ok + "---\nseed: 2", nil, "r.yaml", "one document"},
		{"not a mapping", "- a\n- b", nil, "r.yaml", "must be a mapping"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("r.yaml", []byte(c.src), c.sets)
			var u *usererr.Error
			if !errors.As(err, &u) {
				t.Fatalf("got %v, want a user error", err)
			}
			if u.Where != c.where || !strings.Contains(u.What, c.what) {
				t.Fatalf("got %q, want where %q and a message containing %q", err, c.where, c.what)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("message spans lines: %q", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path, nil)
	if !usererr.Is(err) || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v, want a user error naming %s", err, path)
	}
}

func TestHash(t *testing.T) {
	load := func(sets ...string) Run {
		r, err := Parse("h.yaml", []byte(sketch), sets)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	h := load().Hash()
	if len(h) != 64 || h != load().Hash() {
		t.Fatalf("hash %q not a stable sha256", h)
	}
	for _, set := range []string{"name=other", "train.checkpoint.dir=elsewhere", "train.eval.every=7", "data.train=x/*.txt", "parallel.data=2", "train.device=cuda:1"} {
		if load(set).Hash() != h {
			t.Errorf("--set %s changed the hash; it does not change the weights", set)
		}
	}
	for _, set := range []string{"seed=2", "train.optim.lr=1e-3", "model.nope_every=0", "data.shuffle_seed=8", "metap.depth_alpha=0.5"} {
		if load(set).Hash() == h {
			t.Errorf("--set %s kept the hash; it changes the weights", set)
		}
	}
}
