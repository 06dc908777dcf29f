// Package dashtest starts what the dashboard's tests and benchmarks look at: herd's
// embedded Temporal server with a worker that really trains, runs and sweeps of a tiny
// model on it, held at a chosen step so that they stay running while a test looks, and
// the dashboard over it on loopback. The API tests (workflows/dashboard) and the browser
// test (cmd/herd) share it, so that both measure the same fleet.
package dashtest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/herdml/herd/internal/ui"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/client"
	"github.com/herdml/herd/workflows/dashboard"
	"github.com/herdml/herd/workflows/sweep"
)

// TinyYAML is a run config small enough that a step takes milliseconds, on random tokens
// so that it reads no files. Run names and checkpoint folders are set by Env.
const TinyYAML = `
model:
  vocab_size: 64
  d_model: 16
  n_layers: 2
  n_heads: 2
  n_kv_heads: 1
  ffn_hidden: 32
  seq_len: 8
  moe: {experts: 2, top_k: 1, shared_expert: true, every: 2, expert_hidden: 16}
data: {synthetic: true}
train:
  steps: 20
  global_batch: 2
  micro_batch: 2
  schedule: {warmup: 1}
  checkpoint: {every: 2, keep: 2}
  eval: {every: 0, batches: 1}
metap: {mode: sp}
`

// Env is an embedded Temporal server on a fresh state dir, with a worker in this process
// that trains every segment it is given, and the dashboard over it.
type Env struct {
	Conn *client.Conn
	API  *dashboard.API
	URL  string // the dashboard, http://127.0.0.1:PORT (no token: loopback)
	Dir  string // the state dir; runs checkpoint under Dir/runs
	h    *holds
}

// Start starts an Env; the test's cleanup stops it. opts configure the dashboard.
func Start(t testing.TB, opts dashboard.Options) *Env {
	t.Helper()
	dir := t.TempDir()
	h := &holds{at: map[string]int64{}, held: map[string]bool{}, open: make(chan struct{})}
	// Segments: every run and trial of a fleet trains (or waits at its hold) at once.
	conn, err := client.Connect(client.Target{Queue: workflows.TaskQueue, StateDir: dir},
		&workflows.Activities{BeforeStep: h.hook, Segments: 256})
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Conn: conn, API: dashboard.New(conn.Client, opts), Dir: dir, h: h}
	srv := httptest.NewServer(ui.Handler(e.API, ui.Options{Loopback: true}))
	e.URL = srv.URL
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		h.releaseAll()
		conn.Close()
	})
	return e
}

// Config is TinyYAML named name, checkpointing under the Env's state dir, with sets
// applied (key=value, as --set).
func (e *Env) Config(t testing.TB, name string, sets ...string) config.Run {
	t.Helper()
	cfg, err := config.Parse("tiny.yaml", []byte(TinyYAML), append([]string{"name=" + name, "train.checkpoint.dir=" + filepath.Join(e.Dir, "runs")}, sets...))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// StartRun submits run name (TinyYAML with sets) and returns its config. SegmentSteps 2:
// a run's first segment ends, and its Progress names its folder, after two steps.
func (e *Env) StartRun(t testing.TB, name string, sets ...string) config.Run {
	t.Helper()
	cfg := e.Config(t, name, sets...)
	in := workflows.RunInput{Config: cfg, SegmentSteps: 2, HeartbeatTimeout: 10 * time.Second}
	if _, err := e.Conn.SubmitRun(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// StartSweep submits sweep name: a grid of trials trials over train.optim.lr, all
// training at once, each a TrainRun workflow name/trial-N.
func (e *Env) StartSweep(t testing.TB, name string, trials int) {
	t.Helper()
	src := fmt.Sprintf("name: %s\nbase: base.yaml\nset: [train.checkpoint.dir=%s]\nspace:\n  train.optim.lr: {log_uniform: [1.0e-4, 1.0e-1], points: %d}\n"+
		"method: grid\nmax_concurrent: %d\nmetric: loss\ndirection: min\n", name, filepath.Join(e.Dir, "runs"), trials, trials)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "base.yaml"), []byte("name: base\n"+TinyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".yaml")
	s, err := sweep.Parse(path, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s.Source.Dir = dir
	in := workflows.NewSweepInput(s)
	in.HeartbeatTimeout, in.SegmentSteps = 10*time.Second, 2
	if _, err := e.Conn.SubmitSweep(context.Background(), in); err != nil {
		t.Fatal(err)
	}
}

// Fleet starts runs runs (fleet-0 ...) and a sweep "fleet-sweep" of trials trials, all
// held before their step 3 (after their first segment, so that every one shows a step,
// a loss and a folder) until the test ends, and waits until every one is held.
func (e *Env) Fleet(t testing.TB, runs, trials int) {
	t.Helper()
	e.HoldAll(2)
	names := make([]string, 0, runs+trials)
	for i := range runs {
		name := fmt.Sprintf("fleet-%d", i)
		e.StartRun(t, name)
		names = append(names, name)
	}
	e.StartSweep(t, "fleet-sweep", trials)
	for i := range trials {
		names = append(names, sweep.TrialName("fleet-sweep", i))
	}
	for _, n := range names {
		e.WaitHeld(t, n)
	}
}

// Hold makes run (its config name: a sweep trial's is SWEEP-trial-N) wait before training step done+1 (and every later step) until release
// is called; the run's context ending (pause, stop) still ends the wait.
func (e *Env) Hold(run string, done int64) (release func()) {
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	e.h.at[run] = done
	return func() {
		e.h.mu.Lock()
		defer e.h.mu.Unlock()
		delete(e.h.at, run)
		delete(e.h.held, run)
		e.h.cond().Broadcast()
	}
}

// HoldAll holds every run that Hold does not name before step done+1, until the Env
// ends.
func (e *Env) HoldAll(done int64) {
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	e.h.all = &done
}

// WaitHeld waits until the trainer of run (its config name) waits at its hold, failing the test after a
// minute.
func (e *Env) WaitHeld(t testing.TB, run string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !e.h.isHeld(run) {
		if time.Now().After(deadline) {
			t.Fatalf("run %s never reached its hold", run)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holds is the step hook of an Env's worker.
type holds struct {
	mu   sync.Mutex
	at   map[string]int64 // run -> hold before step done+1
	all  *int64           // hold for every run not in at
	held map[string]bool  // runs waiting at their hold now
	open chan struct{}    // closed when the Env ends
	c    *sync.Cond
}

func (h *holds) cond() *sync.Cond {
	if h.c == nil {
		h.c = sync.NewCond(&h.mu)
	}
	return h.c
}

// hook waits while run has a hold at or below done, or until ctx ends.
func (h *holds) hook(ctx context.Context, run string, done int64) {
	stop := context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.cond().Broadcast()
	})
	defer stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	for ctx.Err() == nil && h.holding(run, done) {
		h.held[run] = true
		h.cond().Wait()
	}
	delete(h.held, run)
}

func (h *holds) holding(run string, done int64) bool {
	select {
	case <-h.open:
		return false
	default:
	}
	if at, ok := h.at[run]; ok {
		return done >= at
	}
	return h.all != nil && done >= *h.all
}

func (h *holds) isHeld(run string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held[run]
}

func (h *holds) releaseAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.open)
	h.cond().Broadcast()
}
