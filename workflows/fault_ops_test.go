package workflows

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// groupEnv is a test environment of TrainRun whose rank activities are fakes: reserve
// hands out slots, train plays one rank's segment.
func groupEnv(t *testing.T, train func(context.Context, RankSegmentInput) (SegmentResult, error)) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	// Neither the machine's load nor the fakes' speed may fail a test: no wall-time limits.
	env.SetTestTimeout(time.Hour)
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: time.Hour})
	env.RegisterWorkflowWithOptions(TrainRun, workflow.RegisterOptions{Name: WorkflowName})
	env.RegisterActivityWithOptions(func(ctx context.Context, in RankInput) (RankSlot, error) {
		return RankSlot{Queue: "ranks", Addr: "127.0.0.1:1", Worker: "w"}, nil
	}, activity.RegisterOptions{Name: ReserveActivity})
	env.RegisterActivityWithOptions(train, activity.RegisterOptions{Name: RankActivity})
	return env
}

// A group segment that exhausts its retries counts as a failure, as a one-rank one does.
func TestGroupFailuresCounted(t *testing.T) {
	env := groupEnv(t, func(ctx context.Context, in RankSegmentInput) (SegmentResult, error) {
		return SegmentResult{}, errors.New("rank died")
	})
	cfg := microConfig(t, "group-fails", "parallel.data=2")
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateStop, "stop", &testsuite.TestUpdateCallback{})
	}, time.Hour)
	env.ExecuteWorkflow(WorkflowName, RunInput{Config: cfg, MaxAttempts: 2})
	var p Progress
	if err := env.GetWorkflowResult(&p); err != nil {
		t.Fatal(err)
	}
	if p.Failures != 1 {
		t.Errorf("failures %d after a group segment exhausted its retries, want 1 (%+v)", p.Failures, p)
	}
}

// A 2-rank run reports the run's tokens per optimizer step, all ranks together
// (global_batch × seq_len), as a one-rank run of the same config does: the ETA divides
// it by the run's tokens/s.
func TestTokensPerStepOfAGroup(t *testing.T) {
	cfg := microConfig(t, "group-tokens", "parallel.data=2")
	env := groupEnv(t, func(ctx context.Context, in RankSegmentInput) (SegmentResult, error) {
		return SegmentResult{Step: in.Until, Loss: 1, TokensPerS: 1000, Checkpoint: "c"}, nil
	})
	env.ExecuteWorkflow(WorkflowName, RunInput{Config: cfg})
	var p Progress
	if err := env.GetWorkflowResult(&p); err != nil {
		t.Fatal(err)
	}
	if want := int64(cfg.Train.GlobalBatch * cfg.Model.SeqLen); p.State != StateCompleted || p.TokensPerStep != want {
		t.Errorf("2-rank run ended %+v, want completed with tokens_per_step %d", p, want)
	}
}
