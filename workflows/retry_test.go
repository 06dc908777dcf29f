package workflows_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/trainer/checkpoint"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// A run's Retry (herd run --max-attempts, --retry-initial, --retry-max) decides how often
// its segment is tried: with 2 attempts, a segment that keeps failing (another owner
// holds the run folder: a retryable error) is tried twice, and the run waits as failed;
// unlimited, it is tried past the default 5 attempts, with `herd status` saying "no
// limit", and the run completes once the folder is free.
func TestRetryAttempts(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		attempts int32
	}{{"capped", 2}, {"unlimited", -1}} {
		queue := faultWorker(t, c, tc.name, hooked(&Activities{}))
		cfg := microConfig(t, tc.name, "train.steps=4", "train.checkpoint.every=2")
		lock, err := checkpoint.LockDir(filepath.Join(cfg.Train.Checkpoint.Dir, cfg.Name))
		if err != nil {
			t.Fatal(err)
		}
		in := calm(input(cfg))
		in.Retry = Retry{MaxAttempts: tc.attempts, RetryInitial: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}
		if _, err := Submit(ctx, c, queue, in); err != nil {
			t.Fatal(err)
		}
		if tc.attempts > 0 {
			waitFor(t, "the capped run to fail", func() bool {
				s, err := GetStatus(ctx, c, tc.name)
				return err == nil && s.State == StateFailed
			})
			lock.Close()
			if _, most := segmentAttempts(t, c, tc.name); most != 2 {
				t.Errorf("the last segment attempt was attempt %d; want 2 with --max-attempts 2", most)
			}
			if s, err := GetStatus(ctx, c, tc.name); err != nil || !strings.Contains(s.Error, "failed after 2 attempts") {
				t.Errorf("status %+v, %v; want the error to say 2 attempts", s, err)
			}
			continue
		}
		var s Status
		waitFor(t, "a seventh attempt", func() bool {
			s, err = GetStatus(ctx, c, tc.name)
			return err == nil && s.Attempt >= DefaultMaxAttempts+2
		})
		if s.MaxAttempts != -1 || s.State != StateRunning {
			t.Errorf("status %+v; want the segment's attempts without limit, the run running", s)
		}
		lock.Close()
		if p := follow(t, c, tc.name); p.State != StateCompleted || p.Step != 4 {
			t.Fatalf("run ended %+v", p)
		}
	}
}
