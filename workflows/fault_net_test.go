package workflows_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/trainer/collective"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// A worker whose configured collective token differs from its peer's: the ranks refuse
// each other, and the run fails at once, without retrying the group, with an error that
// says which address refused which worker's token and what to do. On the base code it was
// retried as a transient failure, attempt after attempt.
func TestBadTokenIsNotRetried(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	w := NewWorker(c, "bad-token", hooked(&Activities{Ranks: 1, Collective: collective.Options{Token: "not-the-others"}}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE=bad-token", "HERD_TEST_RANKS=1")

	cfg, in := oneSegment(t, "bad-token")
	cfg.Parallel.Data = 2
	in.Config = cfg
	if _, err := Submit(context.Background(), c, "bad-token", in); err != nil {
		t.Fatal(err)
	}
	// The run waits as failed (resumable) once the group's attempts are over: one here.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var p Progress
	for p.State != StateFailed {
		s, err := GetStatus(ctx, c, "bad-token")
		if err != nil {
			t.Fatalf("waiting for the run to fail: %v (last state %q)", err, p.State)
		}
		p = s.Progress
		if p.State == StateCompleted || p.State == StateError {
			t.Fatalf("run ended %+v, want failed", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("run error: %s", p.Error)
	if !strings.Contains(p.Error, "refused this rank's token") || !strings.Contains(p.Error, "$HERD_COLLECTIVE_TOKEN") ||
		!strings.Contains(p.Error, "127.0.0.1:") || !strings.Contains(p.Error, "not retried") {
		t.Errorf("run error %q, want the refusing address, the worker's token named, and no retry", p.Error)
	}
	if ids := rankWorkers(t, c, "bad-token"); len(ids) != 2 || p.Failures != 1 {
		t.Errorf("rank segments started %d times (%q), failures %d: want one group attempt", len(ids), ids, p.Failures)
	}
}

// A worker configured with a token ($HERD_COLLECTIVE_TOKEN) joins it to each group's own:
// ranks that share both train together as before.
func TestConfiguredTokenStillWorks(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	w := NewWorker(c, "shared-token", hooked(&Activities{Ranks: 2, Collective: collective.Options{Token: "shared"}}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	cfg := microConfig(t, "shared-token", "train.steps=4", "train.checkpoint.every=2", "parallel.data=2")
	if _, err := Submit(context.Background(), c, "shared-token", input(cfg)); err != nil {
		t.Fatal(err)
	}
	if p := follow(t, c, "shared-token"); p.State != StateCompleted || p.Step != 4 || p.Failures != 0 {
		t.Fatalf("2-rank run with a configured token ended %+v", p)
	}
}
