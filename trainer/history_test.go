package trainer

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/history"
)

// storedHistory reads the metrics history of the run whose checkpoints are at root, a
// folder or a bucket prefix.
func storedHistory(t *testing.T, root string) []history.Row {
	t.Helper()
	rows, err := history.ReadAt(storage.Join(root, history.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// The history has one row per step with every column filled, and a run stopped between
// checkpoints (at step 5, the newest checkpoint at 4) and resumed, by a new trainer or
// the same one, has the history of a run that never stopped: step 5 is trained again and
// its row replaced, not duplicated.
// In fp32 the FP8 columns are null; in fp8 they describe the scaling state.
func TestHistoryOfAResumedRun(t *testing.T) {
	for _, precision := range []string{"fp32", "fp8"} {
		sets := []string{"train.precision=" + precision, "train.checkpoint.every=2", "train.eval.every=3", "train.eval.batches=1"}
		whole := newTrainer(t, microConfig(t, sets...), Options{})
		if _, err := whole.Run(context.Background(), 8); err != nil {
			t.Fatal(err)
		}
		want := storedHistory(t, whole.CheckpointDir())
		whole.Close()
		if len(want) != 8 {
			t.Fatalf("%s: %d rows after 8 steps", precision, len(want))
		}
		for i, r := range want {
			step := int64(i + 1)
			evaluated := step%3 == 0 || step == 8
			fp8 := precision == "fp8"
			if r.Step != step || r.Tokens != step*8*64 || !(r.Loss > 0) || !(r.LR > 0) || !(r.GradNorm > 0) || !(r.StepSeconds > 0) || !(r.TokensPerS > 0) ||
				math.IsNaN(r.EvalLoss) == evaluated || r.EvalBPB != r.EvalLoss/math.Ln2 && evaluated ||
				len(r.ExpertLoad) != 1 || len(r.ExpertLoad[0]) != 2 || math.Abs(r.ExpertLoad[0][0]+r.ExpertLoad[0][1]-1) > 1e-9 ||
				math.IsNaN(r.FP8AmaxMax) == fp8 || math.IsNaN(r.FP8ScaleMin) == fp8 || fp8 && !(r.FP8ScaleMin <= r.FP8ScaleMax && r.FP8AmaxMax > 0) {
				t.Errorf("%s: row %d: %+v", precision, i, r)
			}
		}

		cfg := microConfig(t, sets...)
		ctx, stop := context.WithCancel(context.Background())
		tr := newTrainer(t, cfg, Options{BeforeStep: func(_ context.Context, _ string, done int64) {
			if done == 5 {
				stop()
			}
		}})
		if _, err := tr.Run(ctx, 8); err == nil {
			t.Fatal("Run went on past its cancelled context")
		}
		if rows := storedHistory(t, tr.CheckpointDir()); len(rows) != 5 {
			t.Fatalf("%s: stopped after step 5: %d rows", precision, len(rows))
		}
		if precision == "fp32" {
			// As after a crash, another trainer resumes; in fp8 the same one does.
			tr.Close()
			tr = newTrainer(t, cfg, Options{})
		}
		if name, err := tr.Resume(""); err != nil || name != checkpoint.Name(4) {
			t.Fatalf("resume: %q, %v", name, err)
		}
		if _, err := tr.Run(context.Background(), 8); err != nil {
			t.Fatal(err)
		}
		tr.Close()
		if d := history.Diff(storedHistory(t, tr.CheckpointDir()), want); d != "" {
			t.Errorf("%s: resumed at step 4 after step 5: %s", precision, d)
		}
	}
}

// parallel.data 2 in one process writes one history, rank 0's, equal to one rank's.
func TestHistoryOfTwoRanks(t *testing.T) {
	one := trainDP(t, dpConfig(t, 1, 4), "", 0)
	two := trainDP(t, dpConfig(t, 2, 4), "", 0)
	if d := history.Diff(storedHistory(t, filepath.Dir(two.ckpt)), storedHistory(t, filepath.Dir(one.ckpt))); d != "" {
		t.Errorf("2 ranks against 1: %s", d)
	}
}

// A history that cannot be opened (here its file is a folder) is warned about, and the
// run trains on without one.
func TestHistoryUnwritableWarns(t *testing.T) {
	cfg := microConfig(t)
	if err := os.MkdirAll(filepath.Join(cfg.Train.Checkpoint.Dir, cfg.Name, history.FileName), 0o755); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	tr := newTrainer(t, cfg, Options{Warn: func(w string) { warnings = append(warnings, w) }})
	defer tr.Close()
	if _, err := tr.Run(context.Background(), 2); err != nil {
		t.Fatalf("a broken history stopped the run: %v", err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "no metrics history") || !strings.Contains(warnings[0], history.FileName) {
		t.Errorf("warnings %q; want one about the history, naming its file", warnings)
	}
}
