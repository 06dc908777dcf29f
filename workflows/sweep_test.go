package workflows_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/herdml/herd/workflows/sweep"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// sweepFile writes a sweep over MicroYAML (inline, as base) and loads it.
func sweepFile(t *testing.T, name, rest string, sets ...string) SweepInput {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("name: " + name + "\nbase:\n")
	for _, l := range strings.Split(strings.TrimSpace(MicroYAML), "\n") {
		b.WriteString("  " + l + "\n")
	}
	sets = slices.Concat([]string{"train.checkpoint.dir=" + dir}, smallSets(), sets)
	b.WriteString("set: [" + strings.Join(sets, ", ") + "]\n")
	b.WriteString(rest)
	p := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := sweep.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	in := NewSweepInput(s)
	in.HeartbeatTimeout, in.SearchAttributes = 2*time.Second, true
	return in
}

func runSweep(t *testing.T, c client.Client, in SweepInput) SweepProgress {
	t.Helper()
	if _, err := SubmitSweep(context.Background(), c, TaskQueue, in); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	p, err := FollowSweep(ctx, c, in.Name, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("sweep %s: %v", in.Name, err)
	}
	return p
}

// ASHA over four learning rates: trials stop at rungs, holding no worker, and the sweep
// spends fewer steps than the grid. Run twice, one trial at a time and two at a time (on
// a worker that trains two segments at once), the decisions and every metric are
// identical: they depend on the metrics, never on which trial reached a rung first.
// Continuing as new after every leg changes nothing.
func TestSweepASHA(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	w := NewWorker(c, TaskQueue, hooked(&Activities{Segments: 2}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	const space = `space: {train.optim.lr: {values: [3.0e-2, 1.0e-3, 1.0e-2, 3.0e-3]}}
metric: loss
asha: {rungs: [6, 12], reduction_factor: 2}
`
	a := sweepFile(t, "asha-a", space+"max_concurrent: 1\n", "train.steps=24", "train.checkpoint.every=6")
	b := sweepFile(t, "asha-b", space+"max_concurrent: 2\n", "train.steps=24", "train.checkpoint.every=6")
	b.EventsPerRun = 1
	// No retries here: a retried segment that finds its work already committed reports
	// loss 0 (TrainSegment keeps no loss across attempts), which would differ between runs.
	a.HeartbeatTimeout, b.HeartbeatTimeout = 10*time.Second, 10*time.Second
	pa, pb := runSweep(t, c, a), runSweep(t, c, b)

	for _, p := range []SweepProgress{pa, pb} {
		if p.State != StateCompleted || p.Best < 0 {
			t.Fatalf("sweep %s: state %s best %d", p.Name, p.State, p.Best)
		}
		stopped, completed := 0, 0
		for _, tr := range p.Trials {
			switch tr.State {
			case TrialStopped:
				stopped++
				if !slices.Contains(p.Rungs, tr.Step) {
					t.Errorf("%s stopped at step %d, not at a rung %v", tr.ID, tr.Step, p.Rungs)
				}
				// Its TrainRun ended at the rung: nothing of it holds a worker.
				d, err := c.DescribeWorkflowExecution(context.Background(), tr.ID, "")
				if err != nil || d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED || len(d.GetPendingActivities()) > 0 {
					t.Errorf("%s: %v, pending %d, want a completed run", tr.ID, err, len(d.GetPendingActivities()))
				}
			case TrialCompleted:
				completed++
				if tr.Final >= p.Trials[p.Best].Final && tr.Index != p.Best {
					t.Errorf("best %d (%g) but %s has %g", p.Best, p.Trials[p.Best].Final, tr.ID, tr.Final)
				}
			default:
				t.Errorf("%s ended %s", tr.ID, tr.State)
			}
		}
		if stopped == 0 || completed == 0 || p.Compute >= 4*24 {
			t.Fatalf("%s: %d stopped, %d completed, %d steps of %d", p.Name, stopped, completed, p.Compute, 4*24)
		}
		t.Logf("%s: %d of %d steps, best %v final %g", p.Name, p.Compute, 4*24, p.Trials[p.Best].Params, p.Trials[p.Best].Final)
	}
	for i := range pa.Trials {
		x, y := pa.Trials[i], pb.Trials[i]
		if x.State != y.State || x.Step != y.Step || x.Final != y.Final || !slices.Equal(x.RungLoss, y.RungLoss) {
			t.Errorf("trial %d: %+v one at a time, %+v two at a time", i, x, y)
		}
	}
}

// Must-show 4: `herd stop` of a sweep stops the trial in flight, whose segment stops at
// the next step boundary, commits and frees its worker within one heartbeat interval of
// the stop (the trial is held after its first step, so that no step is in flight and the
// run cannot end first): from the moment the test asks the sweep to stop to the
// segment's end on the server, the whole way through the sweep, its local activity, the
// run's stop update and the reply to the segment's next heartbeat. (The embedded server
// runs in this process: its event times and the test's clock are one clock.) The
// interval is the one heartbeats reach the server at: the segment ticks every third of
// the timeout, but the SDK sends at most one heartbeat a second (the worker's
// MaxHeartbeatThrottleInterval), and the test stops the trial just after one was sent.
func TestSweepStopFreesWorker(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	inProcessWorker(t, c)
	ctx := context.Background()
	in := sweepFile(t, "stopme", "space: {train.optim.lr: {values: [1.0e-2]}}\nmetric: loss\n", "train.steps=10", "train.checkpoint.every=0") // one segment
	// Held after step 1 until the stop ends the run.
	hold(t, sweep.TrialName(in.Name, 0), 1)
	if _, err := SubmitSweep(ctx, c, TaskQueue, in); err != nil {
		t.Fatal(err)
	}
	id := TrialID(in.Name, 0)
	waitHeld(t, sweep.TrialName(in.Name, 0), 1)
	waitFor(t, "a heartbeat of the trial's first step", func() bool {
		s, err := GetStatus(ctx, c, id)
		return err == nil && s.Live != nil && s.Live.Step > 0
	})
	stopped := time.Now()
	if _, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: in.Name, UpdateName: UpdateStop,
		WaitForStage: client.WorkflowUpdateStageCompleted}); err != nil {
		t.Fatal(err)
	}
	p, err := FollowSweep(ctx, c, in.Name, 100*time.Millisecond, nil)
	if err != nil || p.State != StateStopped || p.Trials[0].State != TrialStopped || p.Trials[0].Step != 1 {
		t.Fatalf("after stop: %+v, %v", p, err)
	}
	closed := eventTime(t, c, id, enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
	if closed.IsZero() {
		t.Fatalf("history of %s: the segment never closed", id)
	}
	const interval = time.Second // heartbeats sent with a 2 s timeout (see above)
	d := closed.Sub(stopped)
	if d > interval+time.Second { // the checkpoint and the round trips, on a busy machine
		t.Fatalf("segment closed %v after the stop; want within one heartbeat interval (%v) and 1 s", d, interval)
	}
	t.Logf("segment closed %v after the stop (heartbeat interval %v)", d, interval)
}

// eventTime is the time of the last event of one of the types in a workflow's history
// (its latest run); zero if there is none.
func eventTime(t *testing.T, c client.Client, id string, types ...enumspb.EventType) time.Time {
	t.Helper()
	var at time.Time
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(types, ev.GetEventType()) {
			at = ev.GetEventTime().AsTime()
		}
	}
	return at
}
