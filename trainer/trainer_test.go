package trainer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/trainer/model"
)

// microYAML is a model small enough to train in seconds on two cores, with every part the
// step loop touches: gradient accumulation (2 micro-batches per step), an MoE layer, the
// MetaP table (sp: the tuned base values as they are), clipping, warmup and decay. Train and eval data are real Go sources from
// the standard library, two different packages.
const microYAML = `
name: micro
seed: 1
model:
  vocab_size: 256
  d_model: 48
  n_layers: 2
  n_heads: 4
  n_kv_heads: 2
  ffn_hidden: 128
  seq_len: 64
  nope_every: 2
  moe: {experts: 2, top_k: 1, shared_expert: true, every: 2, expert_hidden: 64, aux_loss: 0.01}
data:
  train: ${GOROOT}/src/strings/*.go
  eval: ${GOROOT}/src/bytes/*.go
train:
  steps: 300
  global_batch: 8
  micro_batch: 4
  optim: {lr: 5.0e-3, weight_decay: 0.1, clip: 1.0}
  schedule: {warmup: 10, decay: cosine, min_lr_ratio: 0.1}
  checkpoint: {every: 0, keep: 3}
  eval: {every: 0, batches: 4}
metap: {mode: sp}
`

// microConfig is microYAML with --set overrides, checkpointing under a fresh folder.
func microConfig(t *testing.T, sets ...string) config.Run {
	t.Helper()
	sets = append([]string{"train.checkpoint.dir=" + t.TempDir()}, sets...)
	cfg, err := config.Parse("micro.yaml", []byte(microYAML), sets)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newTrainer(t *testing.T, cfg config.Run, opts Options) *Trainer {
	t.Helper()
	tr, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// fingerprint is the sha256 of a checkpoint's weights and optimizer files, from its
// manifest, and the state that shapes the future (all of state.json but the config, whose
// checkpoint dir differs from test to test).
func fingerprint(t *testing.T, dir string) map[string]string {
	t.Helper()
	return storedFingerprint(t, filepath.Dir(dir), filepath.Base(dir))
}

// Must show 1: training on real Go source lowers the loss well below ln(256) = 5.55, and
// the held-out loss follows.
func TestTrainingLearnsGoSource(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for a while")
	}
	cfg := microConfig(t)
	var first, last Stats
	tr := newTrainer(t, cfg, Options{Progress: func(s Stats) {
		if s.Step == 1 {
			first = s
		}
		last = s
	}})
	final, err := tr.Run(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if final.Step != int64(cfg.Train.Steps) || last.Step != final.Step || final.Checkpoint != "step-00000300" || final.Eval == nil {
		t.Fatalf("final stats %+v", final)
	}
	t.Logf("loss %.3f -> %.3f, eval %.3f (%.3f bits/byte), grad norm %.3f, %.0f tokens/s",
		first.Loss, final.Loss, final.Eval.Loss, final.Eval.BitsPerByte, final.GradNorm, final.TokensPerS)
	if !(first.Loss > 5) {
		t.Errorf("first loss %.3f: an untrained byte model should start near ln(256) = 5.55", first.Loss)
	}
	if !(final.Loss < 3.0) || !(final.Eval.Loss < 3.0) {
		t.Errorf("after %d steps train loss %.3f, eval loss %.3f; want both under 3.0", final.Step, final.Loss, final.Eval.Loss)
	}
	if got := final.Eval.Loss / math.Ln2; got != final.Eval.BitsPerByte {
		t.Errorf("bits per byte %g, want loss/ln2 = %g", final.Eval.BitsPerByte, got)
	}
	if len(final.ExpertLoad) != 1 || len(final.ExpertLoad[0]) != 2 {
		t.Errorf("expert load %v, want one MoE layer with two experts", final.ExpertLoad)
	}
}

// Must show 3: the same seed gives bit-identical checkpoints, on any number of threads;
// stopping at step k and resuming gives the same final checkpoint as never stopping;
// another seed does not.
func TestDeterministicAndExactResume(t *testing.T) {
	testDeterministicAndExactResume(t)
}

func TestDeterministicAndExactResumeFP8(t *testing.T) {
	testDeterministicAndExactResume(t, "train.precision=fp8")
}

func testDeterministicAndExactResume(t *testing.T, sets ...string) {
	const k, n = 3, 6
	run := func(cfg config.Run, stops ...int64) map[string]string {
		t.Helper()
		var dir string
		for i, until := range append(stops, n) {
			tr := newTrainer(t, cfg, Options{})
			if i > 0 {
				name, err := tr.Resume("")
				if err != nil || name != checkpoint.Name(stops[i-1]) {
					t.Fatalf("resume: %q, %v; want %s", name, err, checkpoint.Name(stops[i-1]))
				}
			}
			st, err := tr.Run(context.Background(), until)
			if err != nil {
				t.Fatal(err)
			}
			dir = filepath.Join(tr.CheckpointDir(), st.Checkpoint)
			tr.Close() // the next trainer takes over the run's folder
		}
		return fingerprint(t, dir)
	}
	a := run(microConfig(t, sets...))
	procs := runtime.GOMAXPROCS(1)
	b := run(microConfig(t, sets...))
	runtime.GOMAXPROCS(procs)
	resumed := run(microConfig(t, sets...), k)
	other := run(microConfig(t, append(sets, "seed=2")...))
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimFile, checkpoint.StateFile} {
		if a[f] != b[f] {
			t.Errorf("%s: two runs with the same seed (%d threads, 1 thread) differ: %s vs %s", f, procs, a[f], b[f])
		}
		if a[f] != resumed[f] {
			t.Errorf("%s: stopped at %d and resumed %s, uninterrupted %s", f, k, resumed[f], a[f])
		}
	}
	if a[checkpoint.ModelFile] == other[checkpoint.ModelFile] {
		t.Error("seed 2 gave the same weights as seed 1")
	}
}

func TestResumeSkipsCorruptAndRefusesOtherConfig(t *testing.T) {
	cfg := microConfig(t, "train.checkpoint.every=1")
	tr := newTrainer(t, cfg, Options{})
	if _, err := tr.Run(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	newest := filepath.Join(tr.CheckpointDir(), checkpoint.Name(2), checkpoint.OptimFile)
	b, _ := os.ReadFile(newest)
	b[len(b)/2] ^= 0x40
	os.WriteFile(newest, b, 0o644)
	tr.Close() // each trainer below takes over the run's folder in turn

	var warnings []string
	tr = newTrainer(t, cfg, Options{Warn: func(w string) { warnings = append(warnings, w) }})
	name, err := tr.Resume("")
	if err != nil || name != checkpoint.Name(1) || tr.StepCount() != 1 {
		t.Fatalf("resume: %q at step %d, %v; want step-00000001", name, tr.StepCount(), err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], checkpoint.Name(2)) || !strings.Contains(warnings[0], newest) {
		t.Fatalf("warnings %q, want one naming %s", warnings, newest)
	}

	// Opened for evaluation, a checkpoint has its step but cannot train or save.
	op, err := Open(filepath.Join(tr.CheckpointDir(), checkpoint.Name(1)), "", Options{})
	if err != nil || op.StepCount() != 1 {
		t.Fatalf("Open: %v", err)
	}
	if _, err := op.Step(); !errors.Is(err, errOpened) {
		t.Fatalf("Step of an opened checkpoint: %v", err)
	}
	if _, err := op.Save(); !errors.Is(err, errOpened) {
		t.Fatalf("Save of an opened checkpoint: %v", err)
	}

	// Given explicitly, the corrupt checkpoint (which resuming set aside) is a user error
	// naming the file.
	aside, _ := filepath.Glob(filepath.Join(tr.CheckpointDir(), ".damaged-"+checkpoint.Name(2)+"-*"))
	if len(aside) != 1 {
		t.Fatalf("set aside %v, want the damaged step-00000002", aside)
	}
	newest = filepath.Join(aside[0], checkpoint.OptimFile)
	tr.Close()
	tr = newTrainer(t, cfg, Options{})
	_, err = tr.Resume(filepath.Dir(newest))
	if !usererr.Is(err) || !strings.Contains(err.Error(), newest) {
		t.Fatalf("explicit corrupt checkpoint: %v", err)
	}
	// Another learning rate is another run: refused, naming the key and both values.
	other := cfg
	other.Train.Optim.LR = 2e-2
	tr.Close()
	_, err = newTrainer(t, other, Options{}).Resume("")
	if !usererr.Is(err) || !strings.Contains(err.Error(), "train.optim.lr: checkpoint 0.005, now 0.02") {
		t.Fatalf("resume with another lr: %v", err)
	}
}

// A learning rate far too large diverges; the error names the step and nothing of that
// step is applied or saved. FP8 stops the same way, although saturation would keep its
// losses finite for longer.
func TestDivergenceNamesTheStep(t *testing.T) {
	for _, precision := range []string{"fp32", "fp8"} {
		t.Run(precision, func(t *testing.T) {
			cfg := microConfig(t, "train.precision="+precision, "train.optim.lr=1.0e+6", "train.optim.clip=0", "train.schedule.warmup=0", "train.checkpoint.every=1")
			tr := newTrainer(t, cfg, Options{})
			_, err := tr.Run(context.Background(), 50)
			if err == nil {
				t.Fatal("lr 1e6 trained 50 steps without going non-finite")
			}
			checkDiverged(t, tr, err, tr.StepCount()+1)
		})
	}
}

// checkDiverged wants err to be the user error of a step that went non-finite at step bad,
// with no checkpoint of that step.
func checkDiverged(t *testing.T, tr *Trainer, err error, bad int64) {
	t.Helper()
	if !usererr.Is(err) || !strings.Contains(err.Error(), fmt.Sprintf("step %d: training went non-finite", bad)) {
		t.Fatalf("got %v, want a user error naming step %d", err, bad)
	}
	if _, err := os.Stat(filepath.Join(tr.CheckpointDir(), checkpoint.Name(bad))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a checkpoint of the diverged step exists: %v", err)
	}
}

// An Inf weight in a linear layer makes the fp32 loss NaN. In FP8 the weight saturates to
// ±448 and the loss stays finite: the scaling's check must stop the step all the same,
// naming the tensor, before any update.
func TestInfInsideFP8LinearStops(t *testing.T) {
	for _, precision := range []string{"fp32", "fp8"} {
		t.Run(precision, func(t *testing.T) {
			tr := newTrainer(t, microConfig(t, "train.precision="+precision, "train.checkpoint.every=1"), Options{})
			if _, err := tr.Run(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			m := tr.Model
			wq := m.Layout.Tensors[slices.IndexFunc(m.Layout.Tensors, func(t model.Tensor) bool { return t.Name == "layers.0.attn.wq" })]
			m.Params.Host()[wq.Offset+3] = float32(math.Inf(1))
			before := slices.Clone(m.Params.Host())
			_, err := tr.Step()
			checkDiverged(t, tr, err, 2)
			if precision == "fp8" && !strings.Contains(err.Error(), "layers.0.attn.wq.weight") {
				t.Errorf("%v: want the FP8 tensor named", err)
			}
			if !slices.Equal(m.Params.Host()[:wq.Offset+3], before[:wq.Offset+3]) || !slices.Equal(m.Params.Host()[wq.Offset+4:], before[wq.Offset+4:]) {
				t.Error("the diverged step changed the weights")
			}
		})
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tr := newTrainer(t, microConfig(t), Options{Progress: func(s Stats) {
		if s.Step == 2 {
			cancel()
		}
	}})
	if _, err := tr.Run(ctx, 0); !errors.Is(err, context.Canceled) || tr.StepCount() != 2 {
		t.Fatalf("Run after cancel at step 2: %v at step %d", err, tr.StepCount())
	}
}

// Gradient accumulation: two micro-batches of 4 give the gradient and loss of one batch
// of 8 (random tokens, so every position weighs the same), up to float32 rounding. The
// load-balancing loss is off here: it is a product of two means over the micro-batch, so
// splitting the batch changes it, as in every framework that accumulates.
func TestAccumulationMatchesOneBigBatch(t *testing.T) {
	step := func(micro int) (*Trainer, Stats) {
		cfg := microConfig(t)
		cfg.Data = config.Data{Synthetic: true, ShuffleSeed: 1}
		cfg.Train.MicroBatch = micro
		cfg.Model.MoE.AuxLoss = 0
		tr := newTrainer(t, cfg, Options{})
		st, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		return tr, st
	}
	one, s1 := step(8)
	two, s2 := step(4)
	if math.Abs(s1.Loss-s2.Loss) > 1e-6*s1.Loss {
		t.Errorf("loss %v with one micro-batch, %v with two", s1.Loss, s2.Loss)
	}
	var diff, size float64
	for i, g := range one.Model.Grads.Host() {
		diff = math.Max(diff, math.Abs(float64(g-two.Model.Grads.Host()[i])))
		size = math.Max(size, math.Abs(float64(g)))
	}
	if diff > 1e-5*size {
		t.Errorf("gradients differ by %g (largest %g)", diff, size)
	}
}

// FP8 on two data-parallel ranks: each rank sees half the micro-batches, the amaxes are
// MAX-reduced before the scales move, so the run is bit-identical to one rank's.
func TestFP8DataParallelMatchesOneRank(t *testing.T) {
	run := func(world string) map[string]string {
		tr := newTrainer(t, microConfig(t, "train.precision=fp8", "parallel.data="+world), Options{})
		defer tr.Close()
		st, err := tr.Run(context.Background(), 4)
		if err != nil {
			t.Fatal(err)
		}
		return fingerprint(t, filepath.Join(tr.CheckpointDir(), st.Checkpoint))
	}
	one, two := run("1"), run("2")
	// state.json differs: it holds each rank's data position.
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimFile} {
		if one[f] != two[f] {
			t.Errorf("%s: 1 rank %s, 2 ranks %s", f, one[f], two[f])
		}
	}
}
