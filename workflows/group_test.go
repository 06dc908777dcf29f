package workflows_test

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// rankWorkers reads a run's history: the identity of the worker of every TrainRank
// attempt that started, in order.
func rankWorkers(t *testing.T, c client.Client, name string) []string {
	return activityWorkers(t, c, name, RankActivity)
}

// activityWorkers reads a run's history: the identity of the worker of every attempt of
// activity type act that started, in order.
func activityWorkers(t *testing.T, c client.Client, name, act string) []string {
	t.Helper()
	it := c.GetWorkflowHistory(context.Background(), name, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]bool{}
	var ids []string
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == act {
			scheduled[ev.GetEventId()] = true
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] {
			ids = append(ids, a.GetIdentity())
		}
	}
	return ids
}

// Must-show 2 and 6: two worker processes of one rank each train a parallel.data: 2 run,
// one rank on each, to the checkpoint that one rank trains alone (same global batch; the
// tree summation makes them bit-identical). Then one worker is SIGKILLed in the middle of
// a segment: the surviving rank is cancelled, and once a worker is back the whole group
// restarts from the last committed checkpoint and ends with the same checkpoint.
func TestDataParallelAcrossWorkers(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	ctx := context.Background()
	ref, _ := oneSegment(t, "dp-ref")
	trainDirect(t, ref)
	want := fingerprint(t, ref)

	worker := func() { helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE=dp", "HERD_TEST_RANKS=1") }
	worker()
	killed := helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE=dp", "HERD_TEST_RANKS=1")

	plain, in := oneSegment(t, "dp-plain")
	plain.Parallel.Data = 2
	in.Config = plain
	if _, err := Submit(ctx, c, "dp", calm(in)); err != nil { // nothing killed: no retry wanted
		t.Fatal(err)
	}
	if p := follow(t, c, "dp-plain"); p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("2-rank run ended %+v", p)
	}
	if got := fingerprint(t, plain); got != want {
		t.Errorf("2 ranks on 2 workers: %s\none rank:               %s", got, want)
	}
	if ids := rankWorkers(t, c, "dp-plain"); len(ids) != 2 || ids[0] == ids[1] {
		t.Errorf("rank segments ran on %q, want one on each worker", ids)
	}

	// Pause reaches the ranks at different times; they agree to stop after the same step
	// and commit it (TestResumeOnAnotherWorldSize checks that no step is lost), and the
	// run resumes from there. Both ranks are held at step 15, between checkpoints, until
	// the pause has committed.
	paused, in := oneSegment(t, "dp-paused")
	paused.Parallel.Data = 2
	in.Config = paused
	release := hold(t, "dp-paused", 15)
	if _, err := Submit(ctx, c, "dp", calm(in)); err != nil { // nothing killed: no retry wanted
		t.Fatal(err)
	}
	waitHeld(t, "dp-paused", 15)
	p, err := Control(ctx, c, "dp-paused", UpdatePause)
	if err != nil {
		t.Fatal(err)
	}
	if p.State != StatePaused || p.Step != 15 || p.Checkpoint != checkpoint.Name(15) ||
		!exists(filepath.Join(paused.Train.Checkpoint.Dir, "dp-paused", p.Checkpoint)) {
		t.Fatalf("paused 2-rank run: %+v, want paused at step 15 with its checkpoint", p)
	}
	release()
	if _, err := Control(ctx, c, "dp-paused", UpdateResume); err != nil {
		t.Fatal(err)
	}
	if p := follow(t, c, "dp-paused"); p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("paused and resumed 2-rank run ended %+v", p)
	}
	if got := fingerprint(t, paused); got != want {
		t.Errorf("2 ranks, paused and resumed: %s\none rank:                   %s", got, want)
	}

	crash, in := oneSegment(t, "dp-killed")
	crash.Parallel.Data = 2
	in.Config = crash
	release = hold(t, "dp-killed", midSegment)
	if _, err := Submit(ctx, c, "dp", in); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, "dp-killed", midSegment)
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	release()
	worker()
	if p := follow(t, c, "dp-killed"); p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("2-rank run with a killed worker ended %+v", p)
	}
	if ids := rankWorkers(t, c, "dp-killed"); len(ids) < 4 {
		t.Errorf("rank segments started %d times (%q); the kill should have restarted both ranks", len(ids), ids)
	}
	if got := fingerprint(t, crash); got != want {
		t.Errorf("2 ranks, one worker killed: %s\none rank:                  %s", got, want)
	}
}

// Must-show 3 through the workflow: a 2-rank run paused mid-segment and resumed with
// parallel.data 1, and another with 4, continue on one rank's sample order (the data
// position of every checkpoint is the one-rank run's at that step) and end with its
// checkpoint, bit for bit (4 micro-batch units per step: a power of two on every rank).
// The pause, sent while both ranks are held at step 15, commits that step, not the last
// periodic checkpoint (every 10 steps).
func TestResumeOnAnotherWorldSize(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	ctx := context.Background()
	w := NewWorker(c, "dp-resize", hooked(&Activities{Ranks: 4}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	const steps = 40
	sets := []string{fmt.Sprintf("train.steps=%d", steps), "train.micro_batch=2", "train.checkpoint.keep=200"}
	ref := microConfig(t, "resize-ref", append(sets, "train.checkpoint.every=1")...)
	trainDirect(t, ref)
	want := fingerprint(t, ref)
	refDir := checkpoint.Dir{Root: filepath.Join(ref.Train.Checkpoint.Dir, ref.Name)}

	for _, to := range []int{1, 4} {
		name := fmt.Sprintf("dp2-to-%d", to)
		cfg := microConfig(t, name, append(sets, "train.checkpoint.every=10", "parallel.data=2")...)
		in := calm(input(cfg))
		in.SegmentSteps = steps
		// Held at step 15 until the pause has committed it.
		const at = 15
		release := hold(t, name, at)
		if _, err := Submit(ctx, c, "dp-resize", in); err != nil {
			t.Fatal(err)
		}
		waitHeld(t, name, at)
		p, err := Control(ctx, c, name, UpdatePause)
		if err != nil {
			t.Fatal(err)
		}
		if p.State != StatePaused || p.Step != at || p.Checkpoint != checkpoint.Name(at) {
			t.Fatalf("%s: paused as %+v, want paused at step %d with its checkpoint", name, p, at)
		}
		release()
		if _, err := Resume(ctx, c, "dp-resize", name, ResumeInput{Data: 3}); !usererr.Is(err) {
			t.Errorf("%s: resuming on 3 ranks (global batch 8): %v, want a user error", name, err)
		}
		before := len(rankWorkers(t, c, name))
		if _, err := Resume(ctx, c, "dp-resize", name, ResumeInput{Data: to}); err != nil {
			t.Fatal(err)
		}
		if p := follow(t, c, name); p.State != StateCompleted || p.Step != steps {
			t.Fatalf("%s ended %+v", name, p)
		}
		ranks, segments := len(rankWorkers(t, c, name))-before, len(activityWorkers(t, c, name, SegmentActivity))
		if (to == 1 && (ranks != 0 || segments == 0)) || (to == 4 && (ranks < 4 || segments != 0)) {
			t.Errorf("%s: after the resume %d rank segments and %d one-rank segments started", name, ranks, segments)
		}
		if got := fingerprint(t, cfg); got != want {
			t.Errorf("%s: %s\none rank: %s", name, got, want)
		}
		dir := checkpoint.Dir{Root: filepath.Join(cfg.Train.Checkpoint.Dir, name)}
		names, err := filepath.Glob(filepath.Join(dir.Root, "step-*"))
		if err != nil || len(names) < 3 {
			t.Fatalf("%s: checkpoints %q (%v), want the pause's and one every 10 steps", name, names, err)
		}
		for _, n := range names {
			got, err := checkpoint.ReadState(dir, filepath.Base(n))
			if err != nil {
				t.Fatal(err)
			}
			ref, err := checkpoint.ReadState(refDir, filepath.Base(n))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Data, ref.Data) {
				t.Errorf("%s: %s at data position %+v, one rank at %+v", name, filepath.Base(n), got.Data, ref.Data)
			}
		}
	}
}
