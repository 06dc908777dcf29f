package workflows

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"syscall"
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

// A run whose worker died shows what the server knows: the segment waits for a retry,
// on attempt 2 after a heartbeat timeout, with the loss of the last heartbeat, not 0,
// in `herd status` (GetStatus) and `herd ls` (List) alike.
func TestDeadWorkerStatus(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	ctx := context.Background()
	const queue = "dead-worker"
	w := helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE="+queue)
	// One segment far longer than the test: the kill always lands inside it, before the
	// run has committed anything (its Progress loss is still 0).
	cfg := microConfig(t, "dead-worker", "train.steps=1000000", "train.checkpoint.every=0")
	if _, err := Submit(ctx, c, queue, input(cfg)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.TerminateWorkflow(ctx, cfg.Name, "", "test over") })
	waitFor(t, "a trained step", func() bool {
		s, err := GetStatus(ctx, c, cfg.Name)
		return err == nil && s.Live != nil && s.Live.Step > 0 && s.Segment == SegmentTraining
	})
	if err := w.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retry", func() bool {
		s, err := GetStatus(ctx, c, cfg.Name)
		return err == nil && s.Segment == SegmentRetrying
	})
	s, err := GetStatus(ctx, c, cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != StateRunning || s.Attempt != 2 || !strings.Contains(s.LastFailure, "eartbeat") ||
		s.Live == nil || !(s.Live.Loss > 0) || s.LastHeartbeat == nil {
		t.Errorf("status of a run whose worker died: %+v, live %+v; want attempt 2 waiting for a retry after a heartbeat timeout, with the last heartbeat's loss", s, s.Live)
	}
	runs, err := List(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.Name == cfg.Name && (r.Segment != SegmentRetrying || r.Live == nil || !(r.Live.Loss > 0)) {
			t.Errorf("listed: %+v, live %+v; want it waiting for a retry with the last heartbeat's loss", r, r.Live)
		}
	}
}
