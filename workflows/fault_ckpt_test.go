package workflows_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/trainer/checkpoint"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// A segment whose run folder another owner holds (here the test process, through the API
// trainers use) fails with a retryable RunFolderLocked error naming the holder, and the
// retry trains once the holder lets go.
func TestSegmentRetriesALockedRunFolder(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	inProcessWorker(t, c)
	cfg := microConfig(t, "locked", "train.steps=4", "train.checkpoint.every=2")
	lock, err := checkpoint.LockDir(filepath.Join(cfg.Train.Checkpoint.Dir, "locked"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Submit(context.Background(), c, TaskQueue, input(cfg)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a segment attempt refused by the lock", func() bool {
		d, err := c.DescribeWorkflowExecution(context.Background(), "locked", "")
		if err != nil {
			return false
		}
		for _, a := range d.GetPendingActivities() {
			if f := a.GetLastFailure(); f.GetApplicationFailureInfo().GetType() == ErrLocked {
				if !strings.Contains(f.GetMessage(), fmt.Sprintf("held by pid %d", os.Getpid())) {
					t.Errorf("the refused attempt's message %q does not name the holder", f.GetMessage())
				}
				return true
			}
		}
		return false
	})
	if err := lock.Close(); err != nil {
		t.Fatal(err)
	}
	if p := follow(t, c, "locked"); p.State != StateCompleted || p.Step != 4 {
		t.Fatalf("run ended %+v", p)
	}
}

// herd resume after the whole `herd run` process was killed with SIGKILL does not wait
// out the dead segment attempt's heartbeat timeout: nobody holds the run folder's lock,
// so the attempt is known dead and failed at once, and the retry starts. The run's
// heartbeat timeout is 5 minutes, longer than the 3 minutes the resume is given.
func TestResumeFailsDeadAttemptAtOnce(t *testing.T) {
	_, in := oneSegment(t, "gone")
	in.HeartbeatTimeout = 5 * time.Minute
	state := killRunMidSegment(t, in)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := resumeLocal(ctx, state, "gone", ResumeInput{}, hooked(&Activities{}), nil)
	if err != nil {
		t.Fatalf("resume: %v (waiting out the dead attempt's heartbeat timeout?)", err)
	}
	if p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("resumed run ended %+v", p)
	}
}
