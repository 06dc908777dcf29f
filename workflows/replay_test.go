package workflows_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herdml/herd/trainer/config"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
	"github.com/herdml/herd/workflows/sweep"
)

// TestReplay replays recorded histories of TrainRun (one rank and a group of two) and of
// Sweep through today's workflow code: a change that would make running workflows
// non-deterministic fails here instead of in production. The histories in testdata were
// recorded by TestRecordHistories; re-record them (HERD_RECORD_HISTORIES=1) only for a
// change that is meant to be incompatible, and then version the workflow instead if runs
// may be in flight. sweep-wholeconfig-* (the scenarios of sweep-asha-* and
// sweep-stopped) were recorded before SweepInput.Base, with each trial's whole config in
// the input, and are kept so that sweeps started then still replay.
func TestReplay(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded histories in testdata (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(TrainRun, workflow.RegisterOptions{Name: WorkflowName})
			r.RegisterWorkflowWithOptions(Sweep, workflow.RegisterOptions{Name: SweepWorkflow})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRecordHistories records the histories TestReplay replays, each scenario below only
// when one of its files is missing from testdata: delete them to record them again. The others stay as they are, since a history
// recorded by an older herd is what checks that the runs it started still replay. It
// runs only when HERD_RECORD_HISTORIES is set.
//
//   - trainrun-paused, -stopped, -diverged: one rank; a run paused mid-segment, resumed
//     and completed; one stopped mid-run; one that diverged (the first two held after
//     step 15 until paused or stopped).
//   - trainrun-extended: a 20-step run paused after step 5 and resumed with --steps 24
//     --schedule stretch --lr (the resume update's lineage), then completed.
//   - group-paused: a parallel.data 2 run, held after step 15, paused, resumed and
//     completed (reservations, rank segments, the group's stop and restart).
//   - group-elastic: TestElasticGroup's run (a 4-rank group with an elastic wait that
//     shrinks to 2 ranks when a worker is killed and grows back to 4).
//   - sweep-asha-1 to -3: the executions of an ASHA sweep over two learning rates, ranked
//     by eval loss, that continues as new after every round of legs and transfers the
//     winner to a target run.
//   - sweep-stopped: a sweep stopped while its trial is held after step 1 (the stop
//     update and its StopTrial local activity).
func TestRecordHistories(t *testing.T) {
	if os.Getenv("HERD_RECORD_HISTORIES") == "" {
		t.Skip("set HERD_RECORD_HISTORIES=1 to re-record testdata/*.json")
	}
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	inProcessWorker(t, c)
	recordRuns(t, c)
	recordExtended(t, c)
	recordGroup(t, c)
	if missing("group-elastic") {
		elasticRun(t, srv, c, "group-elastic")
		saveHistory(t, c, "group-elastic", "", "group-elastic")
	}
	recordSweeps(t, c)
}

func recordRuns(t *testing.T, c client.Client) {
	if !missing("trainrun-paused", "trainrun-stopped", "trainrun-diverged") {
		return
	}
	ctx := context.Background()
	paused := microConfig(t, "paused")
	release := hold(t, "paused", 15)
	if _, err := Submit(ctx, c, TaskQueue, input(paused)); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, "paused", 15)
	if _, err := Control(ctx, c, "paused", UpdatePause); err != nil {
		t.Fatal(err)
	}
	release()
	if _, err := Control(ctx, c, "paused", UpdateResume); err != nil {
		t.Fatal(err)
	}
	follow(t, c, "paused")

	stopped := microConfig(t, "stopped")
	hold(t, "stopped", 15)
	if _, err := Submit(ctx, c, TaskQueue, input(stopped)); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, "stopped", 15)
	if _, err := Control(ctx, c, "stopped", UpdateStop); err != nil {
		t.Fatal(err)
	}
	follow(t, c, "stopped")

	diverged := microConfig(t, "diverged", "train.optim.lr=1e12", "train.optim.clip=0", "train.schedule.warmup=0")
	if _, err := Submit(ctx, c, TaskQueue, input(diverged)); err != nil {
		t.Fatal(err)
	}
	if _, err := Follow(ctx, c, "diverged", FollowEvery, nil); err == nil {
		t.Fatal("diverged run succeeded")
	}
	for _, name := range []string{"paused", "stopped", "diverged"} {
		saveHistory(t, c, name, "", "trainrun-"+name)
	}
}

func recordExtended(t *testing.T, c client.Client) {
	const name = "extended"
	if !missing("trainrun-" + name) {
		return
	}
	ctx := context.Background()
	cfg := microConfig(t, name, "train.steps=20", "train.checkpoint.every=10")
	release := hold(t, name, 5)
	if _, err := Submit(ctx, c, TaskQueue, input(cfg)); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, name, 5)
	if _, err := Control(ctx, c, name, UpdatePause); err != nil {
		t.Fatal(err)
	}
	release()
	longer := ResumeInput{Extension: config.Extension{Steps: 24, Schedule: config.Stretch, LR: 2e-3}}
	if _, err := Control(ctx, c, name, UpdateResume, longer); err != nil {
		t.Fatal(err)
	}
	follow(t, c, name)
	saveHistory(t, c, name, "", "trainrun-"+name)
}

func recordGroup(t *testing.T, c client.Client) {
	const name = "group-paused"
	if !missing(name) {
		return
	}
	ctx := context.Background()
	const queue = "record-group"
	w := NewWorker(c, queue, hooked(&Activities{Ranks: 2}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	release := hold(t, name, 15)
	if _, err := Submit(ctx, c, queue, calm(input(microConfig(t, name, "parallel.data=2")))); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, name, 15)
	if _, err := Control(ctx, c, name, UpdatePause); err != nil {
		t.Fatal(err)
	}
	release()
	if _, err := Control(ctx, c, name, UpdateResume); err != nil {
		t.Fatal(err)
	}
	if p := follow(t, c, name); p.State != StateCompleted {
		t.Fatalf("%s ended %+v", name, p)
	}
	saveHistory(t, c, name, "", name)
}

func recordSweeps(t *testing.T, c client.Client) {
	if !missing("sweep-asha-1", "sweep-asha-2", "sweep-asha-3", "sweep-stopped") {
		return
	}
	ctx := context.Background()
	target := filepath.Join(t.TempDir(), "target.yaml")
	if err := os.WriteFile(target, []byte(MicroYAML+"name: target\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	asha := sweepFile(t, "sweep-asha", `space: {train.optim.lr: {values: [1.0e-2, 3.0e-3]}}
metric: eval_loss
max_concurrent: 2
asha: {rungs: [6], reduction_factor: 2}
transfer: {target: `+target+`, set: [train.steps=6, "train.checkpoint.dir=`+t.TempDir()+`"]}
`, "train.steps=12", "train.checkpoint.every=6", `"data.eval=${GOROOT}/src/bytes/*.go"`)
	asha.EventsPerRun = 1
	if p := runSweep(t, c, asha); p.State != StateCompleted || p.Target == nil || p.Target.State != StateCompleted {
		t.Fatalf("sweep %s ended %+v", asha.Name, p)
	}
	d, err := c.DescribeWorkflowExecution(ctx, asha.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	// Each execution in turn: the first, from the input; one from a carry that trains the
	// promoted trial past its rung; the last, which transfers.
	run := d.GetWorkflowExecutionInfo().GetFirstRunId()
	for i := 1; run != ""; i++ {
		run = saveHistory(t, c, asha.Name, run, fmt.Sprintf("sweep-asha-%d", i))
	}

	stop := sweepFile(t, "sweep-stopped", "space: {train.optim.lr: {values: [1.0e-2]}}\nmetric: loss\n", "train.steps=10")
	hold(t, sweep.TrialName(stop.Name, 0), 1)
	if _, err := SubmitSweep(ctx, c, TaskQueue, stop); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, sweep.TrialName(stop.Name, 0), 1)
	if _, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: stop.Name, UpdateName: UpdateStop,
		WaitForStage: client.WorkflowUpdateStageCompleted}); err != nil {
		t.Fatal(err)
	}
	if p := runSweep(t, c, stop); p.State != StateStopped {
		t.Fatalf("sweep %s ended %+v", stop.Name, p)
	}
	saveHistory(t, c, stop.Name, "", stop.Name)
}

// missing reports whether any of the histories testdata/file.json is not there.
func missing(files ...string) bool {
	for _, f := range files {
		if !exists(filepath.Join("testdata", f+".json")) {
			return true
		}
	}
	return false
}

// saveHistory writes the history of workflow id's run runID ("" = the latest) to
// testdata/file.json and returns the run it continued as, if any.
func saveHistory(t *testing.T, c client.Client, id, runID, file string) (next string) {
	t.Helper()
	var h historypb.History
	it := c.GetWorkflowHistory(context.Background(), id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
		if a := ev.GetWorkflowExecutionContinuedAsNewEventAttributes(); a != nil {
			next = a.GetNewExecutionRunId()
		}
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: " "}.Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", file+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return next
}
