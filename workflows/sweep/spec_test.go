package sweep

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
)

const base = `
model: {preset: tiny}
data: {train: 'x/*.go', eval: 'y/*.go'}
train: {steps: 90, global_batch: 8, micro_batch: 8}
`

// trialConfig is trial i's run config, made as the Sweep workflow makes it.
func trialConfig(t *testing.T, s *Sweep, i int) config.Run {
	t.Helper()
	cfg, err := s.Source.Config(s.Name, s.Trials[i])
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// write puts the base config beside a sweep file and returns the sweep file's path.
func write(t *testing.T, sweep string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "base.yaml"), []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "lr.yaml")
	if err := os.WriteFile(p, []byte(sweep), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Must show 6: each bad sweep file is refused before anything starts, with a user error
// naming the file and the key at fault and saying what is allowed.
func TestBadSweepFiles(t *testing.T) {
	for _, c := range []struct{ name, src, where, what string }{
		{"unknown key in space", "base: base.yaml\nspace: {train.optim.lrr: {values: [1]}}",
			"space.train.optim.lrr", "unknown key; allowed at train.optim: lr, betas"},
		{"unknown section in space", "base: base.yaml\nspace: {trian.steps: {values: [1]}}",
			"space.trian.steps", "unknown key; allowed at the top level"},
		{"empty values", "base: base.yaml\nspace: {train.optim.lr: {values: []}}",
			"space.train.optim.lr.values", "empty list"},
		{"empty uniform range", "base: base.yaml\nspace: {train.optim.lr: {uniform: [0.1, 0.01], points: 3}}",
			"space.train.optim.lr.uniform", "empty range [0.1, 0.01]"},
		{"empty int range", "base: base.yaml\nspace: {train.steps: {int: [10, 5]}}",
			"space.train.steps.int", "empty range [10, 5]"},
		{"log_uniform at zero", "base: base.yaml\nspace: {train.optim.lr: {log_uniform: [0, 0.1], points: 3}}",
			"space.train.optim.lr.log_uniform", "bounds must be positive"},
		{"log_uniform negative", "base: base.yaml\nmethod: random\nmax_trials: 4\nspace: {train.optim.lr: {log_uniform: [-1, 0.1]}}",
			"space.train.optim.lr.log_uniform", "bounds must be positive"},
		{"concurrency above the grid", "base: base.yaml\nmax_concurrent: 3\nspace: {train.optim.lr: {values: [1e-3, 1e-2]}}",
			"max_concurrent", "3, but the sweep has 2 trials"},
		{"concurrency above max_trials", "base: base.yaml\nmethod: random\nmax_trials: 2\nmax_concurrent: 4\nspace: {train.optim.lr: {uniform: [0.001, 0.01]}}",
			"max_concurrent", "want 1 to 2"},
		{"wrong value type", "base: base.yaml\nspace: {model.d_model: {values: [wide]}}",
			"space.model.d_model", "want an integer"},
		{"value out of bounds", "base: base.yaml\nspace: {train.optim.lr: {values: [0.01, -1]}}",
			"base.yaml", "trial 1 (train.optim.lr=-1)"},
		{"grid over a range without points", "base: base.yaml\nspace: {train.optim.lr: {uniform: [0.001, 0.01]}}",
			"space.train.optim.lr", "points"},
		{"unknown sweep key", "base: base.yaml\nspaces: {}", "lr.yaml", "field spaces not found"},
		{"rung past the end", "base: base.yaml\nspace: {train.optim.lr: {values: [1e-3]}}\nasha: {rungs: [10, 90]}",
			"asha.rungs[1]", "rungs must increase"},
		{"eval_loss without eval data", "base: {model: {preset: tiny}, data: {train: 'x/*.go'}}\nmetric: eval_loss\nspace: {train.optim.lr: {values: [1e-3]}}",
			"metric", "needs data.eval"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, c.src)
			_, err := Load(p)
			var u *usererr.Error
			if err == nil || !usererr.Is(err) {
				t.Fatalf("Load: %v, want a user error", err)
			}
			u = err.(*usererr.Error)
			if !strings.Contains(u.Where, c.where) || !strings.Contains(u.What, c.what) {
				t.Fatalf("got %q, want where ~ %q and what ~ %q", err, c.where, c.what)
			}
			if !strings.Contains(err.Error(), filepath.Dir(p)) {
				t.Fatalf("%q does not name the file", err)
			}
		})
	}
}

func TestGridExpansion(t *testing.T) {
	s, err := Load(write(t, `
base: base.yaml
set: [train.steps=60]
space:
  train.optim.lr: {log_uniform: [0.0009765625, 0.0625], points: 4}
  model.n_layers: {int: [1, 3], step: 2}
asha: {min_steps: 5, reduction_factor: 3, grace_period: 5}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Trials) != 8 || s.MaxConcurrent != 1 || s.Metric != "eval_loss" || !s.Minimize {
		t.Fatalf("trials %d, concurrency %d, metric %s minimize %v", len(s.Trials), s.MaxConcurrent, s.Metric, s.Minimize)
	}
	// Octaves 2^-10 .. 2^-4 in 4 points: 2^-10, 2^-8, 2^-6, 2^-4, exactly; last key fastest.
	want := []string{"train.optim.lr=0.0009765625", "model.n_layers=3"}
	if got := s.Trials[1].Params; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("trial 1 %v, want %v", got, want)
	}
	if got := s.Trials[7].Params[0]; got != "train.optim.lr=0.0625" {
		t.Fatalf("trial 7 lr %s", got)
	}
	c := trialConfig(t, s, 7)
	if c.Train.Optim.LR != 0.0625 || c.Model.NLayers != 3 || c.Train.Steps != 60 || c.Name != "lr-trial-7" {
		t.Fatalf("trial 7 config: lr %g layers %d steps %d name %s", c.Train.Optim.LR, c.Model.NLayers, c.Train.Steps, c.Name)
	}
	if got := s.Rungs; len(got) != 3 || got[0] != 5 || got[1] != 15 || got[2] != 45 {
		t.Fatalf("rungs %v, want [5 15 45] (135 >= steps)", got)
	}
}

// Random sampling is a function of the seed alone: the same file gives the same trials,
// another seed others, and every value lies in its range.
func TestRandomIsSeeded(t *testing.T) {
	src := "base: base.yaml\nmethod: random\nmax_trials: 20\nseed: %s\nspace:\n  train.optim.lr: {log_uniform: [1.0e-4, 1.0e-1]}\n  model.n_layers: {int: [1, 4]}\n"
	a, err := Load(write(t, strings.Replace(src, "%s", "7", 1)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Load(write(t, strings.Replace(src, "%s", "7", 1)))
	c, _ := Load(write(t, strings.Replace(src, "%s", "8", 1)))
	same, diff := true, false
	for i := range a.Trials {
		ka, kb, kc := strings.Join(a.Trials[i].Params, " "), strings.Join(b.Trials[i].Params, " "), strings.Join(c.Trials[i].Params, " ")
		same = same && ka == kb
		diff = diff || ka != kc
		cfg := trialConfig(t, a, i)
		if cfg.Train.Optim.LR < 1e-4 || cfg.Train.Optim.LR > 1e-1 || cfg.Model.NLayers < 1 || cfg.Model.NLayers > 4 {
			t.Fatalf("trial %d out of range: %v", i, a.Trials[i].Params)
		}
	}
	if !same || !diff {
		t.Fatalf("same seed same trials: %v; other seed other trials: %v", same, diff)
	}
}

// ASHA's promotion rule, results arriving in order, reduction factor 3.
func TestPromote(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		name     string
		res      []float64
		max      bool
		complete bool
		want     []bool
	}{
		{"alone at its rung waits", []float64{9}, false, false, []bool{false}},
		{"alone at a finished rung goes on", []float64{9}, false, true, []bool{true}},
		{"top 1 of 3", []float64{1, 2, 3}, false, false, []bool{true, false, false}},
		{"maximising", []float64{1, 2, 3}, true, false, []bool{false, false, true}},
		{"a later, larger rung promotes a waiting trial", []float64{1, 3, 2, 5, 6, 7}, false, false,
			[]bool{true, false, true, false, false, false}},
		// Each arrival beats all before it: each is promoted while in the top, and a
		// better one later does not take a promotion back (the price of arriving
		// in ascending order of quality).
		{"improving arrivals", []float64{5, 4, 3, 2, 1, 0}, false, true, []bool{false, false, true, true, true, true}},
		{"a tie ranks the earlier first", []float64{2, 2, 2}, false, false, []bool{true, false, false}},
		{"NaN never ranks", []float64{nan, 1, 2}, false, true, []bool{false, true, false}},
		{"fewer than the factor, finished: the best", []float64{3, 2}, false, true, []bool{false, true}},
		{"fewer than the factor, unfinished: none", []float64{3, 2}, false, false, []bool{false, false}},
	} {
		if got := Promote(c.res, 3, !c.max, c.complete); !slices.Equal(got, c.want) {
			t.Errorf("%s: Promote(%v, max=%v, complete=%v) = %v, want %v", c.name, c.res, c.max, c.complete, got, c.want)
		}
	}
}

// The transfer experiment's sweep file stays valid: 4 widths x 11 octaves x 2 modes.
func TestExampleMetaPTransfer(t *testing.T) {
	s, err := Load("../../examples/metap-transfer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Trials) != 88 || s.Metric != "eval_loss" {
		t.Fatalf("%d trials, metric %s", len(s.Trials), s.Metric)
	}
	last := trialConfig(t, s, 87)
	if last.Model.DModel != 512 || last.Train.Optim.LR != 0.0625 || last.MetaP.Mode != "metap" {
		t.Fatalf("last trial: d_model %d lr %g mode %s", last.Model.DModel, last.Train.Optim.LR, last.MetaP.Mode)
	}
}

// The depth family of the transfer experiment stays valid: 3 depths x 11 octaves under
// metap, every trial at width 128 with metap.base the 2-layer model.
func TestExampleMetaPTransferDepth(t *testing.T) {
	s, err := Load("../../examples/metap-transfer-depth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Trials) != 33 || s.Metric != "eval_loss" {
		t.Fatalf("%d trials, metric %s", len(s.Trials), s.Metric)
	}
	first, last := trialConfig(t, s, 0), trialConfig(t, s, 32)
	if first.Model.NLayers != 2 || first.Train.Optim.LR != 0.00006103515625 || last.Model.NLayers != 8 || last.Train.Optim.LR != 0.0625 {
		t.Fatalf("first trial: %d layers lr %g; last: %d layers lr %g", first.Model.NLayers, first.Train.Optim.LR, last.Model.NLayers, last.Train.Optim.LR)
	}
	for i, tr := range s.Trials {
		if c := trialConfig(t, s, i); c.Model.DModel != 128 || c.MetaP.Mode != "metap" || c.MetaP.Base.NLayers != 2 {
			t.Fatalf("trial %d (%v): d_model %d, mode %s, metap.base.n_layers %d", tr.Index, tr.Params, c.Model.DModel, c.MetaP.Mode, c.MetaP.Base.NLayers)
		}
	}
}

// The ASHA example and its baseline sweep the same 27 trials; only ASHA differs.
func TestExampleASHA(t *testing.T) {
	a, err := Load("../../examples/asha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	full, err := Load("../../examples/asha-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Trials) != 27 || len(full.Trials) != 27 || !slices.Equal(a.Rungs, []int64{30, 90}) || a.Reduction != 4 || full.Rungs != nil {
		t.Fatalf("asha: %d trials, rungs %v, factor %d; full: %d trials, rungs %v", len(a.Trials), a.Rungs, a.Reduction, len(full.Trials), full.Rungs)
	}
	for i := range a.Trials {
		if x, y := a.Trials[i].Params, full.Trials[i].Params; !slices.Equal(x, y) {
			t.Fatalf("trial %d: %v with ASHA, %v without", i, x, y)
		}
	}
}
