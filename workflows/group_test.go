package workflows

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/herdml/herd/trainer/checkpoint"
)

// rankWorkers reads a run's history: the identity of the worker of every TrainRank
// attempt that started, in order.
func rankWorkers(t *testing.T, c client.Client, name string) []string {
	t.Helper()
	it := c.GetWorkflowHistory(context.Background(), name, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]bool{}
	var ids []string
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == RankActivity {
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
	if _, err := Submit(ctx, c, "dp", in); err != nil {
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

	// Pause cancels every rank; none commits the step it is on (they stop at different
	// steps), so the run pauses at the group's last checkpoint and resumes from it.
	paused, in := oneSegment(t, "dp-paused")
	paused.Parallel.Data = 2
	in.Config = paused
	if _, err := Submit(ctx, c, "dp", in); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(paused.Train.Checkpoint.Dir, "dp-paused", checkpoint.Name(10))
	waitFor(t, "a first checkpoint", func() bool { return exists(first) })
	p, err := Control(ctx, c, "dp-paused", UpdatePause)
	if err != nil {
		t.Fatal(err)
	}
	if p.State != StatePaused || p.Step < 10 || p.Step%10 != 0 || p.Checkpoint != checkpoint.Name(p.Step) {
		t.Fatalf("paused 2-rank run: %+v, want paused at a checkpoint", p)
	}
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
	if _, err := Submit(ctx, c, "dp", in); err != nil {
		t.Fatal(err)
	}
	mid := filepath.Join(crash.Train.Checkpoint.Dir, "dp-killed", checkpoint.Name(20))
	waitFor(t, "a checkpoint inside the segment", func() bool { return exists(mid) })
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
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

// A worker's rank slots: a full worker refuses (so that the retry goes elsewhere), a
// retried reservation replaces its earlier self instead of taking a second slot, and a
// rank's segment takes its listener once.
func TestRankSlots(t *testing.T) {
	a := &Activities{Identity: "w", Ranks: 1, slots: slots{free: 1, held: map[string]net.Listener{}}}
	ctx := context.Background()
	first, err := a.ReserveRank(ctx, RankInput{Group: "g", Rank: 0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReserveRank(ctx, RankInput{Group: "g", Rank: 1}); err == nil || !strings.Contains(err.Error(), "no free rank slot") {
		t.Fatalf("second rank on a worker of one slot: %v, want refused", err)
	}
	again, err := a.ReserveRank(ctx, RankInput{Group: "g", Rank: 0})
	if err != nil {
		t.Fatalf("retried reservation: %v", err)
	}
	if _, err := net.Dial("tcp", first.Addr); err == nil && first.Addr != again.Addr {
		t.Errorf("the replaced listener %s still accepts", first.Addr)
	}
	lis := a.take(slotKey("g", 0))
	if lis == nil || lis.Addr().String() != again.Addr {
		t.Fatalf("take: %v, want the listener on %s", lis, again.Addr)
	}
	defer lis.Close()
	if a.take(slotKey("g", 0)) != nil {
		t.Error("a listener taken twice")
	}
	a.release()
	if _, err := a.ReserveRank(ctx, RankInput{Group: "g", Rank: 1}); err != nil {
		t.Errorf("after the segment released its slot: %v", err)
	}
}
