package workflows_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/trainer/history"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// inProcessWorker runs a worker in the test process until the test ends.
func inProcessWorker(t *testing.T, c client.Client) {
	t.Helper()
	w := NewWorker(c, TaskQueue, hooked(&Activities{}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
}

func dialTest(t *testing.T, addr string) client.Client {
	t.Helper()
	c, err := Dial(addr, "", Auth{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// patience bounds how long a test waits for what must happen (a run to end, a trainer to
// reach its hold): long enough for a slow, loaded machine, so that it only ever ends a
// hang, never judges speed.
const patience = 5 * time.Minute

func follow(t *testing.T, c client.Client, name string) Progress {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	p, err := Follow(ctx, c, name, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	return p
}

// waitFor polls cond every 20 ms, for up to patience.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(patience); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// oneSegment is a run trained in one segment of 60 steps that checkpoints every 10. A
// test kills its worker in the middle of the segment by holding the run at midSegment
// (see hold): five steps past the last checkpoint, which a retry must train again.
func oneSegment(t *testing.T, name string) (config.Run, RunInput) {
	cfg := microConfig(t, name, "train.checkpoint.every=10")
	in := input(cfg)
	in.SegmentSteps = 60
	return cfg, in
}

// midSegment is the step a test holds oneSegment's run at to kill its worker.
const midSegment = 25

// segmentAttempts counts the TrainSegment attempts that started, from the run's history.
func segmentAttempts(t *testing.T, c client.Client, name string) (started int, maxAttempt int32) {
	t.Helper()
	it := c.GetWorkflowHistory(context.Background(), name, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil {
			started++
			maxAttempt = max(maxAttempt, a.GetAttempt())
		}
	}
	return started, maxAttempt
}

// Must-show 1 and 5: a worker killed with SIGKILL in the middle of a segment; another
// worker finishes the run after the heartbeat timeout, and the final weights and optimizer
// state are bit-identical to an uninterrupted orchestrated run (which here also pauses,
// resumes and continues as new after every segment) and to `herd train`. A standard SDK
// client, not herd's code, then lists, describes and queries the runs.
func TestWorkerKilledMidSegment(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	ctx := context.Background()

	direct := microConfig(t, "direct")
	trainDirect(t, direct)
	want := fingerprint(t, direct)

	// Uninterrupted by crashes, but paused mid-segment (held at step 15 of the first
	// segment's 30 until the pause has committed) and resumed, and continued as new after
	// each segment: none of it may change the result. A heartbeat timeout no busy machine
	// misses (nothing is killed).
	plain := microConfig(t, "plain")
	inProcessWorker(t, c)
	in := calm(input(plain))
	in.SegmentsPerRun = 1
	release := hold(t, "plain", 15)
	if _, err := Submit(ctx, c, TaskQueue, in); err != nil {
		t.Fatal(err)
	}
	attached, err := Submit(ctx, c, TaskQueue, in)
	if err != nil || !attached {
		t.Fatalf("second Submit: attached=%v err=%v, want an attach", attached, err)
	}
	waitHeld(t, "plain", 15)
	p, err := Control(ctx, c, "plain", UpdatePause)
	if err != nil || p.State != StatePaused {
		t.Fatalf("pause: %+v, %v", p, err)
	}
	waitFor(t, "the pause to commit", func() bool {
		s, err := GetStatus(ctx, c, "plain")
		return err == nil && s.Live == nil && s.Step > 0
	})
	paused, _ := GetStatus(ctx, c, "plain")
	if paused.State != StatePaused || paused.Step != 15 || paused.Checkpoint != checkpoint.Name(15) {
		t.Fatalf("paused run: %+v; want paused at step 15 with its checkpoint", paused.Progress)
	}
	release()
	if _, err := Control(ctx, c, "plain", UpdateResume); err != nil {
		t.Fatal(err)
	}
	if p := follow(t, c, "plain"); p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("plain run ended %+v", p)
	}
	if got := fingerprint(t, plain); got != want {
		t.Errorf("paused and continued-as-new run: %s\nherd train:                        %s", got, want)
	}

	// The crash: a worker in another process is killed while it trains the segment, held
	// at midSegment. The run has a queue of its own, so that only the helpers train it.
	killed, in := oneSegment(t, "killed")
	w1 := helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE=killed")
	release = hold(t, "killed", midSegment)
	if _, err := Submit(ctx, c, "killed", in); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, "killed", midSegment)
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	release()
	helper(t, "HERD_TEST_WORKER="+srv.Addr(), "HERD_TEST_QUEUE=killed")
	if p := follow(t, c, "killed"); p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("killed run ended %+v", p)
	}
	if _, attempt := segmentAttempts(t, c, "killed"); attempt < 2 {
		t.Errorf("the second segment ran %d time(s); the kill should have forced a retry", attempt)
	}
	if got := fingerprint(t, killed); got != want {
		t.Errorf("run with a killed worker: %s\nherd train:                %s", got, want)
	}

	// Must-show 5: the plain SDK client, with none of herd's helpers.
	std, err := client.Dial(client.Options{HostPort: srv.Addr(), Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer std.Close()
	list, err := std.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: "WorkflowType = 'TrainRun' AND HerdState = 'completed' AND ExecutionStatus = 'Completed'"})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range list.GetExecutions() {
		names[e.GetExecution().GetWorkflowId()] = true
	}
	if !names["plain"] || !names["killed"] {
		t.Errorf("standard client lists %v, want plain and killed", names)
	}
	d, err := std.DescribeWorkflowExecution(ctx, "killed", "")
	if err != nil {
		t.Fatal(err)
	}
	if typ := d.GetWorkflowExecutionInfo().GetType().GetName(); typ != WorkflowName {
		t.Errorf("described type %q", typ)
	}
	v, err := std.QueryWorkflow(ctx, "killed", "", QueryProgress)
	if err != nil {
		t.Fatal(err)
	}
	var q Progress
	if err := v.Get(&q); err != nil || q.Step != 60 || q.Checkpoint != checkpoint.Name(60) {
		t.Errorf("progress query: %+v, %v", q, err)
	}
}

// Must-show 2: the whole `herd run` process, embedded server and worker included, is
// killed mid-segment; `herd resume` in a new process (here, this one) brings the server
// back on the same SQLite file and finishes with the same weights as `herd train`.
// Must-show 2 of issue 21: the killed run's metrics history held the steps after its
// last checkpoint (21 to 25); the resumed run replaced them, and its history, in the
// folder its progress names, equals that of `herd train` row for row.
func TestRunProcessKilled(t *testing.T) {
	direct := microConfig(t, "direct")
	trainDirect(t, direct)
	want := fingerprint(t, direct)
	wantHistory := runHistory(t, filepath.Join(direct.Train.Checkpoint.Dir, direct.Name))

	cfg, in := oneSegment(t, "whole")
	state := killRunMidSegment(t, in)
	dir := filepath.Join(cfg.Train.Checkpoint.Dir, cfg.Name)
	if rows := runHistory(t, dir); len(rows) != midSegment {
		t.Fatalf("killed at step %d: the history holds %d rows", midSegment, len(rows))
	}

	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	p, err := resumeLocal(ctx, state, "whole", ResumeInput{}, hooked(&Activities{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("resumed run ended %+v", p)
	}
	if got := fingerprint(t, cfg); got != want {
		t.Errorf("killed and resumed: %s\nherd train:         %s", got, want)
	}
	if p.Dir != dir {
		t.Errorf("progress names folder %q, the run's checkpoints are in %q", p.Dir, dir)
	}
	if d := history.Diff(runHistory(t, p.Dir), wantHistory); d != "" {
		t.Errorf("killed and resumed, metrics history against herd train's: %s", d)
	}
}

// runHistory reads the metrics history of the run folder dir.
func runHistory(t *testing.T, dir string) []history.Row {
	t.Helper()
	rows, err := history.Read(filepath.Join(dir, history.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// killRunMidSegment runs `herd run` of in (a oneSegment run) in a helper process on a
// fresh state dir, SIGKILLs it while its trainer is held at midSegment, and returns the
// state dir, where resumeLocal continues the run.
func killRunMidSegment(t *testing.T, in RunInput) (state string) {
	t.Helper()
	state = t.TempDir()
	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	name := in.Config.Name
	release := hold(t, name, midSegment)
	run := helper(t, "HERD_TEST_RUN="+state, "HERD_TEST_CONFIG="+string(js))
	waitHeld(t, name, midSegment)
	if err := run.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = run.Wait()
	release()
	return state
}

// Must-show 3: the newest checkpoint is corrupt; the segment skips it with a warning that
// names it, resumes from the one before, and the run finishes.
func TestCorruptNewestCheckpoint(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	inProcessWorker(t, c)

	// Steps 1-40 trained directly leave step-30 and step-40 (keep 2).
	cfg := microConfig(t, "corrupt", "train.checkpoint.every=10")
	dir := trainUntil(t, cfg, 40)
	newest := filepath.Join(dir, checkpoint.Name(40), checkpoint.ModelFile)
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(newest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Submit(context.Background(), c, TaskQueue, input(cfg)); err != nil {
		t.Fatal(err)
	}
	p := follow(t, c, "corrupt")
	if p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("run ended %+v", p)
	}
	if !strings.Contains(strings.Join(p.Warnings, "\n"), checkpoint.Name(40)) {
		t.Errorf("warnings %q do not name %s", p.Warnings, checkpoint.Name(40))
	}
}

// Must-show 4: a diverging recipe stops at once with a non-retryable user error naming
// the step that went non-finite; the segment is not retried.
func TestDivergenceIsNotRetried(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	inProcessWorker(t, c)
	cfg := microConfig(t, "diverge", "train.optim.lr=1e12", "train.optim.clip=0", "train.schedule.warmup=0")
	if _, err := Submit(context.Background(), c, TaskQueue, input(cfg)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	_, err := Follow(ctx, c, "diverge", 100*time.Millisecond, nil)
	if !usererr.Is(err) || !strings.Contains(err.Error(), "non-finite") || !strings.Contains(err.Error(), "step ") {
		t.Fatalf("err = %v, want a user error naming the non-finite step", err)
	}
	if started, _ := segmentAttempts(t, c, "diverge"); started != 1 {
		t.Errorf("%d segment attempts, want 1 (no retry)", started)
	}
	s, err := GetStatus(ctx, c, "diverge")
	if err != nil || s.State != StateError || s.Workflow != "Failed" {
		t.Errorf("status %+v, %v; want state error, workflow Failed", s, err)
	}
}

// calm gives a run whose worker is not killed a heartbeat timeout that a machine busy
// with other tests still meets, so that an assertion of "no retry" tests herd, not the load.
func calm(in RunInput) RunInput {
	in.HeartbeatTimeout = 30 * time.Second
	return in
}

// Stop checkpoints the step the run is on and ends it; `herd resume` then finishes it
// with the same result as an uninterrupted run.
func TestStopThenResume(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	inProcessWorker(t, c)
	ctx := context.Background()
	cfg := microConfig(t, "stopped")
	release := hold(t, "stopped", 15)
	if _, err := Submit(ctx, c, TaskQueue, calm(input(cfg))); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, "stopped", 15)
	if _, err := Control(ctx, c, "stopped", UpdateStop); err != nil {
		t.Fatal(err)
	}
	p := follow(t, c, "stopped")
	if p.State != StateStopped || p.Step != 15 || p.Checkpoint != checkpoint.Name(15) {
		t.Fatalf("stopped run: %+v, want stopped at step 15 with its checkpoint", p)
	}
	if _, err := Control(ctx, c, "stopped", UpdatePause); !usererr.Is(err) {
		t.Errorf("pausing an ended run: %v, want a user error", err)
	}
	release()
	if _, err := Resume(ctx, c, TaskQueue, "stopped", ResumeInput{}); err != nil {
		t.Fatal(err)
	}
	if p := follow(t, c, "stopped"); p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("resumed run: %+v", p)
	}
	direct := microConfig(t, "direct")
	trainDirect(t, direct)
	if got, want := fingerprint(t, cfg), fingerprint(t, direct); got != want {
		t.Errorf("stopped and resumed: %s\nherd train:          %s", got, want)
	}
}

// A worker stopped gracefully (SIGTERM, Ctrl-C: worker.Stop) checkpoints the step its
// segment is on before it goes; a new worker continues from there to the same result.
func TestGracefulWorkerShutdown(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	ctx := context.Background()
	cfg := microConfig(t, "graceful")
	w := NewWorker(c, "graceful", hooked(&Activities{}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	release := hold(t, "graceful", 15)
	if _, err := Submit(ctx, c, "graceful", calm(input(cfg))); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, "graceful", 15)
	w.Stop()
	names, err := (checkpoint.Dir{Root: filepath.Join(cfg.Train.Checkpoint.Dir, "graceful")}).List()
	if err != nil || len(names) == 0 || names[len(names)-1] != checkpoint.Name(15) {
		t.Fatalf("checkpoints after a graceful stop: %v (%v); want one of step 15, where the segment was", names, err)
	}
	release()
	w = NewWorker(c, "graceful", hooked(&Activities{}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if p := follow(t, c, "graceful"); p.State != StateCompleted || p.Step != 60 {
		t.Fatalf("run ended %+v", p)
	}
	if _, attempt := segmentAttempts(t, c, "graceful"); attempt != 1 {
		t.Errorf("a graceful stop used a retry (attempt %d)", attempt)
	}
	direct := microConfig(t, "direct")
	trainDirect(t, direct)
	if got, want := fingerprint(t, cfg), fingerprint(t, direct); got != want {
		t.Errorf("after a graceful stop: %s\nherd train:          %s", got, want)
	}
}
