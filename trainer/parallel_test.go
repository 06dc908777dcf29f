package trainer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/collective"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/trainer/history"
)

// dpConfig is the micro config with 4 micro-batch units of 2 sequences per step, so that
// 1, 2 and 4 ranks each hold a power-of-two number of units.
func dpConfig(t *testing.T, ranks, steps int, sets ...string) config.Run {
	t.Helper()
	return microConfig(t, append([]string{
		fmt.Sprintf("parallel.data=%d", ranks), fmt.Sprintf("train.steps=%d", steps),
		"train.global_batch=8", "train.micro_batch=2", "data.eval=",
	}, sets...)...)
}

// dpRun is what a run leaves: per-step losses and data positions, and its last checkpoint.
type dpRun struct {
	loss   []float64
	tokens []int64
	pos    []data.State
	ckpt   string // folder of the last checkpoint
}

// trainDP trains cfg until step until, first resuming from the checkpoint folder from if
// it is set.
func trainDP(t *testing.T, cfg config.Run, from string, until int64) dpRun {
	t.Helper()
	var out dpRun
	var tr *Trainer
	tr = newTrainer(t, cfg, Options{Progress: func(st Stats) {
		out.loss = append(out.loss, st.Loss)
		out.tokens = append(out.tokens, st.Tokens)
		out.pos = append(out.pos, tr.train.State())
	}})
	defer tr.Close()
	if from != "" {
		if _, err := tr.Resume(from); err != nil {
			t.Fatal(err)
		}
	}
	st, err := tr.Run(context.Background(), until)
	if err != nil {
		t.Fatal(err)
	}
	out.ckpt = filepath.Join(tr.CheckpointDir(), st.Checkpoint)
	return out
}

// weights are the sha256 of a checkpoint's weight and optimizer files, and its step.
func weights(t *testing.T, dir string) string {
	f := fingerprint(t, dir)
	return f[checkpoint.ModelFile] + " " + f[checkpoint.OptimFile]
}

// Must show 1: with the canonical tree, 2 and 4 ranks give the losses and checkpoints of
// one rank bit for bit over 50 steps, and a world size run twice (once on one thread)
// gives the same checkpoint.
func TestDataParallelMatchesOneRankBitForBit(t *testing.T) {
	const steps = 50
	one := trainDP(t, dpConfig(t, 1, steps), "", 0)
	if one.loss[steps-1] > 0.8*one.loss[0] {
		t.Fatalf("one rank did not learn: loss %g then %g", one.loss[0], one.loss[steps-1])
	}
	for k, ranks := range []int{2, 4, 4} {
		procs := runtime.GOMAXPROCS(0)
		if k == 2 {
			runtime.GOMAXPROCS(1) // the second 4-rank run on one thread: no thread count shows
		}
		dp := trainDP(t, dpConfig(t, ranks, steps), "", 0)
		runtime.GOMAXPROCS(procs)
		for i := range steps {
			if math.Float64bits(dp.loss[i]) != math.Float64bits(one.loss[i]) {
				t.Fatalf("%d ranks, step %d: loss %.17g, one rank %.17g", ranks, i+1, dp.loss[i], one.loss[i])
			}
			if dp.tokens[i] != one.tokens[i] {
				t.Fatalf("%d ranks, step %d: %d tokens, one rank %d", ranks, i+1, dp.tokens[i], one.tokens[i])
			}
			if dp.pos[i] != one.pos[i] {
				t.Fatalf("%d ranks, step %d: data position %+v, one rank %+v", ranks, i+1, dp.pos[i], one.pos[i])
			}
		}
		if a, b := weights(t, dp.ckpt), weights(t, one.ckpt); a != b {
			t.Fatalf("%d ranks: checkpoint %s, one rank %s", ranks, a, b)
		}
	}
}

// Must show 3: a checkpoint of 2 ranks resumes on 1 and on 4 ranks on the same sample
// order, and the run continues as if it had never stopped.
func TestResumeOnAnotherWorldSize(t *testing.T) {
	const stop, steps = 4, 8
	cfg := dpConfig(t, 2, steps, "train.checkpoint.every=4")
	whole := trainDP(t, cfg, "", 0)
	first := trainDP(t, dpConfig(t, 2, steps, "train.checkpoint.every=4"), "", stop)
	for _, ranks := range []int{1, 4} {
		rest := trainDP(t, dpConfig(t, ranks, steps), first.ckpt, 0)
		if len(rest.loss) != steps-stop {
			t.Fatalf("%d ranks: resumed for %d steps, want %d", ranks, len(rest.loss), steps-stop)
		}
		for i := range rest.loss {
			if rest.pos[i] != whole.pos[stop+i] {
				t.Fatalf("%d ranks, step %d: data position %+v, uninterrupted %+v", ranks, stop+i+1, rest.pos[i], whole.pos[stop+i])
			}
			if rest.loss[i] != whole.loss[stop+i] {
				t.Fatalf("%d ranks, step %d: loss %.17g, uninterrupted %.17g", ranks, stop+i+1, rest.loss[i], whole.loss[stop+i])
			}
		}
		if a, b := weights(t, rest.ckpt), weights(t, whole.ckpt); a != b {
			t.Fatalf("resumed on %d ranks: checkpoint %s, uninterrupted %s", ranks, a, b)
		}
	}
}

// With 3 units per rank the tree differs between world sizes, but a world size still
// repeats itself bit for bit, and tracks one rank's loss closely.
func TestDataParallelOddUnitsTracksOneRank(t *testing.T) {
	const steps = 20
	sets := []string{"train.global_batch=12"}
	one := trainDP(t, dpConfig(t, 1, steps, sets...), "", 0)
	a := trainDP(t, dpConfig(t, 2, steps, sets...), "", 0)
	b := trainDP(t, dpConfig(t, 2, steps, sets...), "", 0)
	if weights(t, a.ckpt) != weights(t, b.ckpt) {
		t.Fatal("two runs on 2 ranks differ")
	}
	for i := range steps {
		if d := math.Abs(a.loss[i]-one.loss[i]) / one.loss[i]; d > 1e-5 {
			t.Errorf("step %d: 2 ranks %.9g, one rank %.9g: %.2g relative", i+1, a.loss[i], one.loss[i], d)
		}
	}
}

// The orchestrator's path: each rank is its own Trainer joined by Options.Group, as on
// separate hosts. Rank 0 alone writes the checkpoint, the one a single rank writes, and
// the metrics history, a single rank's too.
func TestRanksJoinedByAGroup(t *testing.T) {
	const steps = 6
	one := trainDP(t, dpConfig(t, 1, steps), "", 0)
	cfg := dpConfig(t, 2, steps)
	ckpt := groupRanks(t, 2, func(r int, g *collective.Group) (string, error) {
		tr, err := New(cfg, Options{Group: g})
		if err != nil {
			return "", err
		}
		defer tr.Close()
		st, err := tr.Run(context.Background(), 0)
		return filepath.Join(tr.CheckpointDir(), st.Checkpoint), err
	})
	if ckpt[0] != ckpt[1] {
		t.Fatalf("ranks committed %s and %s", ckpt[0], ckpt[1])
	}
	if a, b := weights(t, ckpt[0]), weights(t, one.ckpt); a != b {
		t.Fatalf("2 ranks joined by a group: checkpoint %s, one rank %s", a, b)
	}
	if d := history.Diff(storedHistory(t, filepath.Dir(ckpt[0])), storedHistory(t, filepath.Dir(one.ckpt))); d != "" {
		t.Errorf("2 ranks joined by a group: history against one rank's: %s", d)
	}
}

// Pausing a group: only rank 1 is told to stop (after its step 3), as a pause reaches each
// rank's worker at its own time; both ranks stop after the same step, and saving then
// commits that step once, the checkpoint one rank trained to that step writes.
func TestGroupStopsTogether(t *testing.T) {
	const steps = 20
	cfg := dpConfig(t, 2, steps)
	stopped := make([]int64, 2)
	ckpt := groupRanks(t, 2, func(r int, g *collective.Group) (string, error) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tr, err := New(cfg, Options{Group: g, Progress: func(st Stats) {
			if r == 1 && st.Step == 3 {
				cancel()
			}
		}})
		if err != nil {
			return "", err
		}
		defer tr.Close()
		if _, err := tr.Run(ctx, 0); !errors.Is(err, context.Canceled) {
			return "", fmt.Errorf("Run: %v, want context.Canceled", err)
		}
		stopped[r] = tr.StepCount()
		name, err := tr.Save()
		return filepath.Join(tr.CheckpointDir(), name), err
	})
	if stopped[0] != 3 || stopped[1] != 3 {
		t.Fatalf("ranks stopped after steps %v, want both after step 3", stopped)
	}
	if ckpt[0] != ckpt[1] {
		t.Fatalf("ranks committed %s and %s", ckpt[0], ckpt[1])
	}
	one := trainDP(t, dpConfig(t, 1, steps), "", 3)
	if a, b := weights(t, ckpt[0]), weights(t, one.ckpt); a != b {
		t.Fatalf("2 ranks stopped at step 3: checkpoint %s, one rank to step 3 %s", a, b)
	}
}

// groupRanks runs rank(r, g) for each rank of a world-size collective group in this
// process, each on its own goroutine as on its own host, closes the groups, fails the test
// on any rank's error, and returns what each rank returned (its checkpoint folder).
func groupRanks(t *testing.T, world int, rank func(r int, g *collective.Group) (string, error)) []string {
	t.Helper()
	groups, err := collective.NewLocal(world, collective.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, errs := make([]string, world), make([]error, world)
	var wg sync.WaitGroup
	for r, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer g.Close()
			out[r], errs[r] = rank(r, g)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return out
}

// A step that goes non-finite on 2 ranks stops both at once with the user error of that
// step, whichever rank saw it, and commits no checkpoint of it.
func TestDataParallelDivergenceNamesTheStep(t *testing.T) {
	cfg := dpConfig(t, 2, 50, "train.optim.lr=1.0e+6", "train.optim.clip=0", "train.schedule.warmup=0", "train.checkpoint.every=1")
	tr := newTrainer(t, cfg, Options{})
	defer tr.Close()
	_, err := tr.Run(context.Background(), 0)
	if err == nil {
		t.Fatal("lr 1e6 trained 50 steps on 2 ranks without going non-finite")
	}
	checkDiverged(t, tr, err, tr.StepCount()+1)
}

// flaky fails its fail-th call of Next once, as a network source may.
type flaky struct {
	data.Source
	calls, fail int
}

func (f *flaky) Next(b *data.Batch) error {
	f.calls++
	if f.calls == f.fail {
		return errors.New("flaky: connection reset")
	}
	return f.Source.Next(b)
}

// A step that fails between its micro-batches leaves nothing behind: resuming the same
// trainer from its last checkpoint gives the weights of a run that never failed.
func TestStepFailedHalfWayLeavesNoGradient(t *testing.T) {
	const steps = 4
	cfg := dpConfig(t, 1, steps, "train.checkpoint.every=1")
	whole := trainDP(t, cfg, "", 0)
	cfg = dpConfig(t, 1, steps, "train.checkpoint.every=1")
	src, err := openSource(cfg, cfg.Data.Train, cfg.Train.GlobalBatch, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTrainer(t, cfg, Options{Train: &flaky{Source: src, fail: 4*2 + 3}}) // step 3, unit 3
	defer tr.Close()
	if _, err := tr.Run(context.Background(), 0); err == nil || tr.StepCount() != 2 {
		t.Fatalf("got %v at step %d, want the flaky source's error in step 3", err, tr.StepCount())
	}
	if _, err := tr.Resume(""); err != nil {
		t.Fatal(err)
	}
	st, err := tr.Run(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := weights(t, filepath.Join(tr.CheckpointDir(), st.Checkpoint)), weights(t, whole.ckpt); a != b {
		t.Fatalf("after a failed step: checkpoint %s, never failed %s", a, b)
	}
}
