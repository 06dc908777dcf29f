package trainer

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// Options.BeforeStep runs before every step with the run's name and the steps done; a run
// held there by it stops after that step once its context ends, as a paused run does.
func TestBeforeStepHoldsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var seen []int64
	tr := newTrainer(t, microConfig(t, "train.steps=5"), Options{BeforeStep: func(ctx context.Context, run string, done int64) {
		if run != "micro" {
			t.Errorf("BeforeStep got run %q, want micro", run)
		}
		seen = append(seen, done)
		if done == 2 {
			go cancel() // the run is stopped while held
			<-ctx.Done()
		}
	}})
	if _, err := tr.Run(ctx, 0); !errors.Is(err, context.Canceled) || tr.StepCount() != 2 {
		t.Fatalf("Run held at step 2 and cancelled: %v at step %d", err, tr.StepCount())
	}
	if want := []int64{0, 1, 2}; !slices.Equal(seen, want) {
		t.Errorf("BeforeStep saw %v, want %v", seen, want)
	}
}
