package workflows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/herdml/herd/workflows/devserver"
	"github.com/herdml/herd/workflows/sweep"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// Must-show 3: the whole `herd sweep` process (embedded server, worker, client) SIGKILLed
// while a trial trains (the second, held at step 5, the first waiting at its rung). A new
// process on the
// same state dir (what `herd resume` runs) finishes the sweep: every trial ends
// completed or stopped at a rung, none is left running, and each trial's run has exactly
// one execution per leg (none run twice).
func TestSweepProcessKilled(t *testing.T) {
	dir := t.TempDir()
	in := sweepFile(t, "killed", `space: {train.optim.lr: {values: [1.0e-2, 1.0e-3, 3.0e-2]}}
metric: loss
asha: {rungs: [10], reduction_factor: 2}
`, "train.steps=30", "train.checkpoint.every=10")
	in.HeartbeatTimeout = 2 * time.Second
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	second := sweep.TrialName(in.Name, 1)
	release := hold(t, second, 5)
	proc := helper(t, "HERD_TEST_SWEEP="+dir, "HERD_TEST_SWEEP_INPUT="+string(raw))

	ctx := context.Background()
	waitHeld(t, second, 5)
	c := dialTest(t, devserver.RunningAddr(dir))
	waitFor(t, "the sweep to show the second trial training", func() bool {
		p, err := GetSweep(ctx, c, "killed")
		return err == nil && len(p.Trials) == 3 && p.Trials[0].Step > 0 && p.Trials[1].State == TrialRunning
	})
	c.Close()
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	release()

	l, err := Connect(Target{Queue: TaskQueue, StateDir: dir}, hooked(&Activities{}))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	p, err := FollowSweep(fctx, l.Client, "killed", 100*time.Millisecond, nil)
	if err != nil || p.State != StateCompleted {
		t.Fatalf("after the restart: %+v, %v", p, err)
	}
	checkTrialsEnded(t, l.Client, p)
}

// Must-show 3, the worker alone: the worker process that runs a sweep (its workflow and
// its trials' segments) is SIGKILLed in the middle of a trial's segment, while the server
// and the sweep's client live on. A new worker process on the queue finishes the sweep:
// the segment is retried from its last checkpoint, every trial ends completed or stopped
// at a rung, none is left running, and each trial's run has one execution per leg.
func TestSweepWorkerKilled(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	ctx := context.Background()
	// Rung at 10 of 60 steps, a checkpoint every 10: a trial past its rung trains one
	// segment of 50 steps, in which every trial is held at midSegment to kill it there.
	in := sweepFile(t, "wkilled", `space: {train.optim.lr: {values: [1.0e-2, 1.0e-3, 3.0e-2]}}
metric: loss
asha: {rungs: [10], reduction_factor: 2}
`, "train.steps=60", "train.checkpoint.every=10")
	in.SegmentSteps = 60
	var releases []func()
	for _, tr := range in.Trials {
		releases = append(releases, hold(t, sweep.TrialName(in.Name, tr.Index), midSegment))
	}
	w1 := helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE=wkilled")
	if _, err := SubmitSweep(ctx, c, "wkilled", in); err != nil {
		t.Fatal(err)
	}
	killed := -1
	waitFor(t, "a trial held in its segment", func() bool {
		for i, tr := range in.Trials {
			if held(sweep.TrialName(in.Name, tr.Index), midSegment) {
				killed = i
				return true
			}
		}
		return false
	})
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = w1.Wait()
	for _, release := range releases {
		release()
	}
	helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE=wkilled")
	fctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	p, err := FollowSweep(fctx, c, in.Name, 100*time.Millisecond, nil)
	if err != nil || p.State != StateCompleted {
		t.Fatalf("after the new worker: %+v, %v", p, err)
	}
	if _, attempt := segmentAttempts(t, c, TrialID(in.Name, killed)); attempt < 2 {
		t.Errorf("trial %d's segment ran %d time(s); the kill should have forced a retry", killed, attempt)
	}
	checkTrialsEnded(t, c, p)
}

// checkTrialsEnded fails the test unless every trial of a finished sweep ended completed
// or stopped at a rung, no execution of its run is left running, and its run has one
// execution per leg: none was lost or run twice.
func checkTrialsEnded(t *testing.T, c client.Client, p SweepProgress) {
	t.Helper()
	for _, tr := range p.Trials {
		legs := 1 + len(tr.RungLoss)
		if tr.State == TrialStopped {
			legs-- // ended at its last rung
		}
		if tr.State != TrialCompleted && tr.State != TrialStopped {
			t.Errorf("%s ended %s", tr.ID, tr.State)
		}
		resp, err := c.ListWorkflow(context.Background(), listRequest(tr.ID))
		if err != nil {
			t.Fatal(err)
		}
		runs := 0
		for _, e := range resp.GetExecutions() {
			if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				t.Errorf("%s still running", tr.ID)
			}
			if e.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
				runs++
			}
		}
		if runs != legs {
			t.Errorf("%s: %d executions, want one per leg (%d)", tr.ID, runs, legs)
		}
	}
}

func listRequest(id string) *workflowservice.ListWorkflowExecutionsRequest {
	return &workflowservice.ListWorkflowExecutionsRequest{Query: fmt.Sprintf("WorkflowId = '%s'", id)}
}
