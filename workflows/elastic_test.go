package workflows_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
	"github.com/herdml/herd/workflows/devserver"
)

// Must-show 5 of issue 20: a 4-rank run with an elastic wait, four worker processes of
// one rank each, one of them killed for good in its second segment (held after step 7;
// checkpoints every 5 steps). The group is retried, reserves at most 3 of its 4 ranks
// within the wait, and goes on from step 5 on 2 ranks (3 do not divide the global batch of
// 8 into whole micro-batches); a fifth worker started while those 2 ranks train lets the
// next segment grow back to 4 at step 10. Both resizes are in the run's progress (its memo, so its history, and
// `herd status`), and the final checkpoint is that of `herd train` resized by hand at the
// same steps: 4 ranks to step 5, resumed on 2 to step 10, then on 4 to the end.
func TestElasticGroup(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	elasticRun(t, srv, c, "elastic")
}

// elasticSets is the run of TestElasticGroup: 20 steps of a small model, a global batch of
// 8 in 4 micro-batches of 2 (1, 2 or 4 ranks all give the same bits, docs/parallel.md).
var elasticSets = []string{"model.d_model=16", "model.seq_len=8", "model.ffn_hidden=32", "model.moe.expert_hidden=16",
	"train.steps=20", "train.micro_batch=2", "train.checkpoint.every=5", "train.checkpoint.keep=10"}

// elasticRun runs TestElasticGroup's scenario as run name on queue name, and returns once
// it has checked its end.
func elasticRun(t *testing.T, srv *devserver.Server, c client.Client, name string) {
	ctx := context.Background()
	ref := microConfig(t, name+"-ref", elasticSets...)
	for _, leg := range []struct {
		data  int
		until int64
	}{{4, 5}, {2, 10}, {4, 0}} {
		ref.Parallel.Data = leg.data
		trainUntil(t, ref, leg.until)
	}
	want := fingerprint(t, ref)

	worker := func() *exec.Cmd {
		w := helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE="+name, "HERD_TEST_RANKS=1")
		waitPolling(t, c, name, w)
		return w
	}
	var workers []*exec.Cmd
	for range 4 {
		workers = append(workers, worker())
	}
	cfg := microConfig(t, name, append(elasticSets, "parallel.data=4")...)
	in := input(cfg)
	// The dead rank's segment ends at its heartbeat timeout; 2 s would also end live ones
	// on a loaded machine. The wait is long enough for 3 live workers to reserve.
	in.HeartbeatTimeout, in.ElasticWait = 5*time.Second, 10*time.Second
	release := hold(t, name, 7)
	if _, err := Submit(ctx, c, name, in); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, name, 7)
	if err := workers[3].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	releaseShrunk := hold(t, name, 8) // only a group without the killed rank gets past step 8
	release()
	waitHeld(t, name, 8)
	s, err := GetStatus(ctx, c, name)
	if err != nil {
		t.Fatal(err)
	}
	if s.World != 2 || len(s.Resizes) != 1 || s.Resizes[0].From != 4 || s.Resizes[0].To != 2 || s.Resizes[0].Step != 5 ||
		!strings.Contains(s.Resizes[0].Reason, " of 4 ranks reserved within the elastic wait") {
		t.Fatalf("after the kill: world %d, resizes %+v; want 2 ranks, resized 4 → 2 at step 5 as too few ranks were reserved", s.World, s.Resizes)
	}
	worker()
	releaseShrunk()
	p := follow(t, c, name)
	if p.State != StateCompleted || p.Step != 20 {
		t.Fatalf("elastic run ended %+v", p)
	}
	if p.World != 0 || len(p.Resizes) != 2 || p.Resizes[1].From != 2 || p.Resizes[1].To != 4 || p.Resizes[1].Step != 10 {
		t.Errorf("at the end: world %d, resizes %+v; want grown back 2 → 4 at step 10", p.World, p.Resizes)
	}
	if got := fingerprint(t, cfg); got != want {
		t.Errorf("elastic run:    %s\nresized by hand: %s", got, want)
	}
}

// waitPolling waits until worker process w polls queue for activities, so that a
// reservation finds it there.
func waitPolling(t *testing.T, c client.Client, queue string, w *exec.Cmd) {
	t.Helper()
	id := fmt.Sprintf("%d@", w.Process.Pid)
	waitFor(t, "worker "+id+" polling "+queue, func() bool {
		d, err := c.DescribeTaskQueue(context.Background(), queue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		if err != nil {
			return false
		}
		for _, p := range d.GetPollers() {
			if strings.HasPrefix(p.GetIdentity(), id) {
				return true
			}
		}
		return false
	})
}
