package workflows_test

import (
	"context"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/trainer/checkpoint"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// faultWorker runs a worker with acts on a queue of the test's own until the test ends,
// and ends the test's run (which may wait as failed) with it.
func faultWorker(t *testing.T, c client.Client, run string, acts *Activities) string {
	t.Helper()
	queue := "fault-" + run
	w := NewWorker(c, queue, acts)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.TerminateWorkflow(context.Background(), run, "", "test over")
		w.Stop()
	})
	return queue
}

// panicking is the CPU backend with an embedding lookup that panics, as a bug would.
type panicking struct{ kernels.Backend[float32] }

func (panicking) Embedding(_, _ kernels.Buf[float32], _ kernels.Buf[int32], _ int, _ float32) {
	panic("injected fault")
}

// A segment that panics is not retried (training is deterministic: every attempt would
// panic the same way): the run ends at once in state error, and the follower's error
// carries the panic's value and the frame that panicked, and is not a user error.
func TestSegmentPanicIsNotRetried(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	queue := faultWorker(t, c, "panics", hooked(&Activities{Backend: panicking{device.CPU[float32]()}}))
	if _, err := Submit(context.Background(), c, queue, calm(input(microConfig(t, "panics")))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Follow(ctx, c, "panics", 100*time.Millisecond, nil)
	if err == nil || usererr.Is(err) || !strings.Contains(err.Error(), "injected fault") ||
		!strings.Contains(err.Error(), "panicking.Embedding (fault_sizes_test.go:") {
		t.Fatalf("err = %v, want an internal error with the panic's value and frame", err)
	}
	if started, _ := segmentAttempts(t, c, "panics"); started != 1 {
		t.Errorf("%d segment attempts, want 1 (no retry)", started)
	}
	s, err := GetStatus(ctx, c, "panics")
	if err != nil || s.State != StateError || s.Workflow != "Failed" || !strings.Contains(s.Error, "injected fault") {
		t.Errorf("status %+v, %v; want state error naming the panic, workflow Failed", s, err)
	}
}

// A segment that does not fit in the worker's memory fails at once, before allocating,
// with a user error; it is not retried.
func TestSegmentTooBigIsNotRetried(t *testing.T) {
	old := debug.SetMemoryLimit(1 << 30) // the worker is in this process
	defer debug.SetMemoryLimit(old)
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	queue := faultWorker(t, c, "toobig", hooked(&Activities{}))
	cfg := microConfig(t, "toobig", "model.d_model=65536", "model.n_heads=64", "model.n_kv_heads=8")
	if _, err := Submit(context.Background(), c, queue, calm(input(cfg))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Follow(ctx, c, "toobig", 100*time.Millisecond, nil)
	if !usererr.Is(err) || !strings.Contains(err.Error(), "of memory per rank") || !strings.Contains(err.Error(), "1 GiB this process may use (limit set by GOMEMLIMIT)") {
		t.Fatalf("err = %v, want a user error with the estimate and the 1 GiB limit", err)
	}
	if started, _ := segmentAttempts(t, c, "toobig"); started != 1 {
		t.Errorf("%d segment attempts, want 1 (no retry)", started)
	}
}

// A followed run whose segment exhausts its retries waits, failed, for `herd resume`:
// Follow stops following and says why, instead of waiting for ever.
func TestFollowStopsWhenRunFails(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	queue := faultWorker(t, c, "fails", hooked(&Activities{}))
	// Another owner holds the run folder: the segment fails with a retryable error.
	cfg := microConfig(t, "fails")
	lock, err := checkpoint.LockDir(filepath.Join(cfg.Train.Checkpoint.Dir, cfg.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	in := calm(input(cfg))
	in.MaxAttempts = 1
	if _, err := Submit(context.Background(), c, queue, in); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = Follow(ctx, c, "fails", 100*time.Millisecond, nil)
	if err == nil || usererr.Is(err) || !strings.Contains(err.Error(), "run fails failed: segment to step 30 failed after 1 attempts") ||
		!strings.Contains(err.Error(), "run folder in use") {
		t.Fatalf("err = %v, want the run's failure: its segment and why", err)
	}
	s, err := GetStatus(context.Background(), c, "fails")
	if err != nil || s.State != StateFailed || s.Workflow != "Running" {
		t.Errorf("status %+v, %v; want state failed, workflow still Running (waiting for resume)", s, err)
	}
}
