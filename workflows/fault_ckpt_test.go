package workflows

import (
	"context"
	"encoding/json"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/herdml/herd/trainer/checkpoint"
)

// herd resume after the whole `herd run` process was killed with SIGKILL does not wait
// out the dead segment attempt's heartbeat timeout: nobody holds the run folder's lock,
// so the attempt is known dead and failed at once, and the retry starts. The run's
// heartbeat timeout is 5 minutes, longer than the 3 minutes the resume is given.
func TestResumeFailsDeadAttemptAtOnce(t *testing.T) {
	cfg, in := oneSegment(t, "gone")
	in.HeartbeatTimeout = 5 * time.Minute
	state := t.TempDir()
	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	run := helper(t, "HERD_TEST_RUN="+state, "HERD_TEST_CONFIG="+string(js))
	mid := filepath.Join(cfg.Train.Checkpoint.Dir, "gone", checkpoint.Name(20))
	waitFor(t, "a checkpoint inside the segment", func() bool { return exists(mid) })
	if err := run.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = run.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := ResumeLocal(ctx, state, "gone", ResumeInput{}, &Activities{}, nil)
	if err != nil {
		t.Fatalf("resume: %v (waiting out the dead attempt's heartbeat timeout?)", err)
	}
	if p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("resumed run ended %+v", p)
	}
}
