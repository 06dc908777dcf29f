package workflows_test

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/herdml/herd/trainer/config"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// A group segment that exhausts its retries counts as a failure, as a one-rank one does:
// a 2-rank run allowed one attempt, whose one worker is SIGKILLed mid-segment, waits as
// failed with failures 1.
func TestGroupFailuresCounted(t *testing.T) {
	c, cfg := killGroupWorker(t, "group-fails", 1)
	ctx := context.Background()
	waitFor(t, "the run to fail", func() bool {
		s, err := GetStatus(ctx, c, cfg.Name)
		return err == nil && s.State == StateFailed
	})
	if s, _ := GetStatus(ctx, c, cfg.Name); s.Failures != 1 || !strings.Contains(s.Error, "group segment") {
		t.Errorf("failed 2-rank run: %+v; want failures 1 and the group's error", s.Progress)
	}
}

// A 2-rank run reports the run's tokens per optimizer step, all ranks together
// (global_batch × seq_len), as a one-rank run of the same config does: the ETA divides
// it by the run's tokens/s.
func TestTokensPerStepOfAGroup(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	const queue = "group-tokens"
	w := NewWorker(c, queue, hooked(&Activities{Ranks: 2}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	cfg := microConfig(t, "group-tokens", "parallel.data=2", "train.steps=2", "train.checkpoint.every=2")
	if _, err := Submit(context.Background(), c, queue, input(cfg)); err != nil {
		t.Fatal(err)
	}
	p := follow(t, c, cfg.Name)
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
	// Held after its first step, in a segment that commits nothing before its end: the
	// kill lands inside it while the run's Progress loss is still 0.
	cfg := microConfig(t, "dead-worker", "train.checkpoint.every=0")
	hold(t, cfg.Name, 1)
	if _, err := Submit(ctx, c, queue, input(cfg)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.TerminateWorkflow(ctx, cfg.Name, "", "test over") })
	waitHeld(t, cfg.Name, 1)
	waitFor(t, "a heartbeat of the trained step", func() bool {
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

// A group's retries show as a one-rank segment's do: after one of its workers is
// SIGKILLed mid-segment, with no worker to take its rank again, the run is on attempt 2
// with the group's failure, reserving its ranks.
func TestGroupRetryShown(t *testing.T) {
	c, cfg := killGroupWorker(t, "group-retry", 0)
	ctx := context.Background()
	waitFor(t, "the group's retry to reserve its ranks", func() bool {
		s, err := GetStatus(ctx, c, cfg.Name)
		return err == nil && s.Segment == SegmentReserving
	})
	if s, _ := GetStatus(ctx, c, cfg.Name); s.State != StateRunning || s.Attempt != 2 || s.LastFailure == "" || s.Failures != 0 {
		t.Errorf("2-rank run retrying: %+v; want running, attempt 2 with its last failure", s)
	}
}

// killGroupWorker starts a 2-rank run name on two one-rank workers of a queue of its own,
// with maxAttempts per group segment (0 = the default), holds it after its first step,
// SIGKILLs one worker there (mid-segment: nothing is committed) and returns a client and
// the run's config. The run is terminated when the test ends.
func killGroupWorker(t *testing.T, name string, maxAttempts int32) (client.Client, config.Run) {
	t.Helper()
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	ctx := context.Background()
	helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE="+name, "HERD_TEST_RANKS=1")
	killed := helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE="+name, "HERD_TEST_RANKS=1")
	cfg := microConfig(t, name, "parallel.data=2", "train.checkpoint.every=0")
	in := input(cfg)
	in.MaxAttempts = maxAttempts
	hold(t, cfg.Name, 1)
	if _, err := Submit(ctx, c, name, in); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.TerminateWorkflow(ctx, cfg.Name, "", "test over") })
	waitHeld(t, cfg.Name, 1)
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return c, cfg
}
