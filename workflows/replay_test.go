package workflows_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// TestReplay replays recorded histories of TrainRun through today's workflow code: a
// change that would make running workflows non-deterministic fails here instead of in
// production. The histories in testdata were recorded by TestRecordHistories; re-record
// them (HERD_RECORD_HISTORIES=1) only for a change that is meant to be incompatible, and
// then version the workflow instead if runs may be in flight.
func TestReplay(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded histories in testdata (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(TrainRun, workflow.RegisterOptions{Name: WorkflowName})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRecordHistories records the histories TestReplay replays: a run paused mid-segment,
// resumed and completed; one stopped mid-run; one that diverged (the first two held after
// step 15 until paused or stopped). It runs only when HERD_RECORD_HISTORIES is set.
func TestRecordHistories(t *testing.T) {
	if os.Getenv("HERD_RECORD_HISTORIES") == "" {
		t.Skip("set HERD_RECORD_HISTORIES=1 to re-record testdata/*.json")
	}
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	inProcessWorker(t, c)
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
		var h historypb.History
		it := c.GetWorkflowHistory(ctx, name, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			h.Events = append(h.Events, ev)
		}
		b, err := temporalproto.CustomJSONMarshalOptions{Indent: " "}.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "trainrun-"+name+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
