package workflows_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/herdml/herd/workflows/devserver"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// benchRuns numbers the benchmark's runs: a run name that completed before would attach.
var benchRuns int

// BenchmarkOverhead compares `herd run` with `herd train` on the same config and steps, in
// one process: the direct trainer, then the TrainRun workflow on the embedded server
// (already started) with an in-process worker. It reports the orchestration's extra wall
// time in percent and per segment, and, separately, the one-time start of the embedded
// server that `herd run` without --temporal pays.
func BenchmarkOverhead(b *testing.B) {
	start := time.Now()
	own, err := devserver.Start(devserver.Options{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	serverStart := time.Since(start)
	own.Stop()

	srv := startServer(b)
	c, err := Dial(srv.Addr(), "", Auth{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w := NewWorker(c, "overhead", &Activities{})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	// Segments of 150 steps of the micro model: seconds of work, still short next to the
	// minutes a real segment trains, so the per-segment cost shows more here than it will.
	const steps, segment = 300, 150
	sets := []string{fmt.Sprintf("train.steps=%d", steps), fmt.Sprintf("train.checkpoint.every=%d", segment)}
	// The fastest of b.N tries of each: on a shared machine, other processes only ever
	// add time, so the minimum is the best estimate of each path's own cost.
	direct, orchestrated, outside := time.Duration(1<<62), time.Duration(1<<62), time.Duration(1<<62)
	for range b.N {
		benchRuns++
		cfg := microConfig(b, "direct", sets...)
		t0 := time.Now()
		trainDirect(b, cfg)
		direct = min(direct, time.Since(t0))

		cfg = microConfig(b, fmt.Sprintf("orchestrated-%d", benchRuns), sets...)
		t0 = time.Now()
		if _, err := Submit(context.Background(), c, "overhead", RunInput{Config: cfg}); err != nil {
			b.Fatal(err)
		}
		if _, err := Follow(context.Background(), c, cfg.Name, FollowEvery, nil); err != nil {
			b.Fatal(err)
		}
		orchestrated = min(orchestrated, time.Since(t0))
		outside = min(outside, outsideSegments(b, c, cfg.Name, t0))
	}
	// Wall time of both paths: noisy where other processes share the cores.
	b.ReportMetric(100*(orchestrated.Seconds()-direct.Seconds())/direct.Seconds(), "wall_overhead_%")
	// Time the run spent outside its segments (submit, dispatch, workflow tasks, result),
	// from the server's own event times: what orchestration adds, whatever the load.
	b.ReportMetric(outside.Seconds()*1e3, "ms_outside_segments")
	b.ReportMetric(100*outside.Seconds()/direct.Seconds(), "outside_%")
	b.ReportMetric(direct.Seconds(), "s/train")
	b.ReportMetric(serverStart.Seconds()*1e3, "ms/server-start")
}

// outsideSegments is the run's time from submit (t0) to its close event, less the time
// its TrainSegment activities ran (started to completed events).
func outsideSegments(b *testing.B, c client.Client, name string, t0 time.Time) time.Duration {
	var total, inside time.Duration
	var started time.Time
	it := c.GetWorkflowHistory(context.Background(), name, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			started = at
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			inside += at.Sub(started)
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
			total = at.Sub(t0)
		}
	}
	return total - inside
}
