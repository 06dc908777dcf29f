package trainer

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
)

// A cosine run extended on resume, first restarted with a new peak LR, then stretched:
// each step trains at the LR the formula gives, a trainer not told of the changes refuses
// the checkpoint, and the checkpoints' state lists every change at its step.
func TestResumeRestartThenStretch(t *testing.T) {
	cfg := microConfig(t, "train.steps=4", "train.schedule.warmup=1", "train.checkpoint.every=4")
	tr := newTrainer(t, cfg, Options{})
	if _, err := tr.Run(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	tr.Close()

	var lineage []config.Change
	// extend resumes the run from step at cfg changed by e, trains to e.Steps, and checks
	// each step's LR against want.
	extend := func(step int64, e config.Extension, want func(s int) float64) {
		t.Helper()
		next, changes, err := cfg.Resume(step, e)
		if err != nil {
			t.Fatal(err)
		}
		tr := newTrainer(t, next, Options{Changes: lineage})
		_, err = tr.Resume("")
		tr.Close()
		if !usererr.Is(err) || !strings.Contains(err.Error(), "train.steps") {
			t.Fatalf("a change the run's history does not record: %v, want a user error naming train.steps", err)
		}
		lineage = append(lineage, changes...)
		var lrs []float64
		tr = newTrainer(t, next, Options{Changes: lineage, Progress: func(st Stats) { lrs = append(lrs, st.LR) }})
		defer tr.Close()
		if name, err := tr.Resume(""); err != nil || name != checkpoint.Name(step) {
			t.Fatalf("resume with the recorded changes: %q, %v", name, err)
		}
		if _, err := tr.Run(context.Background(), int64(e.Steps)); err != nil {
			t.Fatal(err)
		}
		for i, got := range lrs {
			s := int(step) + 1 + i
			if w := next.Train.Optim.LR * want(s); math.Abs(got-w) > 1e-12*w {
				t.Errorf("%s to %d: step %d LR %g, want %g", e.Schedule, e.Steps, s, got, w)
			}
		}
		if len(lrs) != e.Steps-int(step) {
			t.Errorf("%s: trained %d steps, want %d", e.Schedule, len(lrs), e.Steps-int(step))
		}
		st, err := checkpoint.ReadState(tr.store, checkpoint.Name(int64(e.Steps)))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(st.Lineage, lineage) {
			t.Errorf("state.json lineage %v, want %v", st.Lineage, lineage)
		}
		cfg = next
	}
	cosine := func(p float64) float64 { return 0.1 + 0.9*(1+math.Cos(math.Pi*p))/2 }
	// A new cosine from step 4 to 8 at the new peak, without warmup.
	extend(4, config.Extension{Steps: 8, Schedule: config.Restart, LR: 2e-3}, func(s int) float64 { return cosine(float64(s-4) / 4) })
	// The restarted curve carried to 12 steps: from step 4 to 12.
	extend(8, config.Extension{Steps: 12, Schedule: config.Stretch}, func(s int) float64 { return cosine(float64(s-4) / 8) })
	for _, key := range []string{"train.optim.lr", "train.schedule.start", "train.schedule.warmup"} {
		if !slices.ContainsFunc(lineage, func(c config.Change) bool { return c.Key == key && c.Step == 4 }) {
			t.Errorf("lineage %v lacks %s at step 4", lineage, key)
		}
	}
}
