package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herdml/herd/internal/stephook"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/workflows"
)

// graceBound is the --grace of the tests that send SIGTERM: generous, so that only a
// hang, never a slow machine, misses it, and asserted: herd must exit within it.
const graceBound = 2 * time.Minute

// started is a herd process running in the background.
type started struct {
	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	exited         chan error // Wait's result, once
}

// lockedBuffer is a bytes.Buffer that the test reads while the process writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startHerd runs the binary in dir in the background; the test's cleanup kills it if it
// is still running.
func startHerd(t *testing.T, dir string, args ...string) *started {
	t.Helper()
	s := &started{cmd: herdCmd(t, dir, nil, args...), exited: make(chan error, 1)}
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); <-s.exited })
	return s
}

// stop sends sig and waits for the process to exit, at most graceBound (then it fails
// the test: the grace period is the promise). It returns the exit status.
func (s *started) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	s.signal(t, sig)
	select {
	case err := <-s.exited:
		s.exited <- err // for the cleanup
		noStackTrace(t, s.cmd.Args, s.stdout.String()+s.stderr.String())
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(graceBound + 30*time.Second): // the grace, plus time to start exiting
		t.Fatalf("herd %s still running %s after %v\n%s", strings.Join(s.cmd.Args[1:], " "), graceBound, sig, s.stderr.String())
		return -1
	}
}

// waitFor waits until cond holds, as waitUntil does, and fails the test at once if the
// process ends first.
func (s *started) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, what, func() bool {
		select {
		case err := <-s.exited:
			s.exited <- err
			t.Fatalf("herd %s ended (%v) before %s:\n%s", strings.Join(s.cmd.Args[1:], " "), err, what, s.stderr.String())
		default:
		}
		return cond()
	})
}

func (s *started) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// holdAt holds run e2e before step done+1 in every herd process the test starts, until
// the returned release is called (see internal/stephook).
func holdAt(t *testing.T, done int64) (release func(), held func() bool) {
	t.Helper()
	holds := os.Getenv(stephook.HoldsEnv)
	if holds == "" {
		holds = t.TempDir()
		t.Setenv(stephook.HoldsEnv, holds)
	}
	release, err := stephook.Hold(holds, "e2e", done)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return release, func() bool { return stephook.Held(holds, "e2e", done) }
}

// waitUntil polls cond every 20 ms for up to five minutes: a bound on a hang.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// newest is the name of the newest checkpoint in the run folder dir.
func newest(t *testing.T, dir string) string {
	t.Helper()
	names, err := (checkpoint.Dir{Root: dir}).List()
	if err != nil || len(names) == 0 {
		t.Fatalf("checkpoints in %s: %v (%v)", dir, names, err)
	}
	return names[len(names)-1]
}

var stopLine = regexp.MustCompile(`e2e: stopped by (SIG\w+) at step (\d+) of 8, checkpoint (\S+);`)

// Must-show 3 for `herd train`: SIGTERM (or Ctrl-C) while it trains makes it finish the
// step in flight, checkpoint that step and exit 0 within --grace, saying where it stopped
// and how to resume; the same command then ends with the weights of a run never stopped.
// Once the run is held before step 6 (between checkpoints, which come every 2 steps), so
// the stop must commit step 5; once stopped wherever SIGINT lands, most often in a step.
func TestTrainStopsOnSIGTERM(t *testing.T) {
	dir := tinyRun(t)
	args := []string{"train", "run.yaml", "--set", "train.steps=8", "--grace", graceBound.String()}
	if _, stderr, status := herd(t, dir, append(args, "--out", "direct")...); status != 0 {
		t.Fatalf("uninterrupted herd train: status %d\n%s", status, stderr)
	}
	want := weights(t, filepath.Join(dir, "direct", "e2e", checkpoint.Name(8)))

	for _, c := range []struct {
		sig  os.Signal
		out  string
		hold int64 // the run is held there: signalled at once, or (-1) after its first checkpoint
	}{
		{syscall.SIGTERM, "held", 5},
		{os.Interrupt, "anywhere", -1},
	} {
		run := filepath.Join(c.out, "e2e")
		var s *started
		var release func()
		if c.hold > 0 {
			var held func() bool
			release, held = holdAt(t, c.hold)
			s = startHerd(t, dir, append(args, "--out", c.out)...)
			s.waitFor(t, "herd train held at step 5", held)
		} else {
			// Held before the last step, so that the signal lands before the run ends.
			release, _ = holdAt(t, 7)
			s = startHerd(t, dir, append(args, "--out", c.out)...)
			s.waitFor(t, "a first checkpoint", func() bool {
				// Any: train.checkpoint.keep 2 removes step 2's at step 6.
				names, err := (checkpoint.Dir{Root: filepath.Join(dir, run)}).List()
				return err == nil && len(names) > 0
			})
		}
		status := s.stop(t, c.sig)
		release() // the resumed run trains straight through
		if status != 0 {
			t.Fatalf("herd train after %v: status %d\n%s", c.sig, status, s.stderr.String())
		}
		m := stopLine.FindStringSubmatch(s.stderr.String())
		if m == nil || !strings.Contains(s.stderr.String(), "the same `herd train` command resumes") {
			t.Fatalf("herd train after %v does not say where it stopped and how to resume:\n%s", c.sig, s.stderr.String())
		}
		step, _ := strconv.ParseInt(m[2], 10, 64)
		if c.hold > 0 && step != c.hold {
			t.Errorf("held before step %d, stopped at step %d", c.hold+1, step)
		}
		if got := newest(t, filepath.Join(dir, run)); got != checkpoint.Name(step) || m[3] != filepath.Join(run, got) || m[1] != map[os.Signal]string{syscall.SIGTERM: "SIGTERM", os.Interrupt: "SIGINT"}[c.sig] {
			t.Errorf("stopped at step %d by %s, checkpoint %s; the newest is %s", step, m[1], m[3], got)
		}
		if _, stderr, status := herd(t, dir, append(args, "--out", c.out)...); status != 0 {
			t.Fatalf("resumed herd train: status %d\n%s", status, stderr)
		}
		if got := weights(t, filepath.Join(dir, run, checkpoint.Name(8))); got != want {
			t.Errorf("stopped by %v at step %d and resumed: %s, uninterrupted: %s", c.sig, step, got, want)
		}
	}
}

// A --grace that leaves no time is refused before anything is trained or written.
func TestGraceMustBePositive(t *testing.T) {
	dir := tinyRun(t)
	for _, cmd := range [][]string{{"train", "run.yaml"}, {"run", "run.yaml"}, {"worker", "--temporal", "127.0.0.1:1"}} {
		stdout, stderr, status := herd(t, dir, append(cmd, "--grace", "0s")...)
		wantUserError(t, stdout, stderr, status, "--grace", "0s")
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused --grace wrote the run folder: %v", err)
	}
}

// Must-show 3 for `herd run` on the embedded server: SIGTERM while the run is held before
// step 6 (in its third segment of two steps) makes it commit step 5 and exit 0 within
// --grace, saying so; `herd resume` then ends with the weights of `herd train`.
func TestRunStopsOnSIGTERM(t *testing.T) {
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	steps := []string{"--set", "train.steps=8"}
	if _, stderr, status := herd(t, dir, append([]string{"train", "run.yaml", "--out", "direct"}, steps...)...); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	release, held := holdAt(t, 5)
	s := startHerd(t, dir, append([]string{"run", "run.yaml", "--grace", graceBound.String()}, steps...)...)
	s.waitFor(t, "herd run held at step 5", held)
	run := filepath.Join(dir, "out", "e2e")
	s.sigtermHeldAt5(t, release, "herd run", run,
		"run e2e stopped by SIGTERM at step 5, checkpoint "+filepath.Join(run, checkpoint.Name(5))+"; `herd status e2e` shows it, `herd resume e2e` continues it")
	if _, stderr, status := herd(t, dir, "resume", "e2e"); status != 0 {
		t.Fatalf("herd resume: status %d\n%s\nherd run:\n%s", status, stderr, s.stderr.String())
	}
	if got, want := weights(t, filepath.Join(run, checkpoint.Name(8))), weights(t, filepath.Join(dir, "direct", "e2e", checkpoint.Name(8))); got != want {
		t.Errorf("stopped by SIGTERM and resumed: %s, herd train: %s", got, want)
	}
}

// sigtermHeldAt5 sends SIGTERM to s (a herd process, called what, held before step 6 by
// holdAt(t, 5)), lets the step go on, and checks that s exits 0 saying want and that
// step 5 is the newest checkpoint in run.
func (s *started) sigtermHeldAt5(t *testing.T, release func(), what, run, want string) {
	t.Helper()
	status := s.stop(t, syscall.SIGTERM)
	release()
	if status != 0 {
		t.Fatalf("%s after SIGTERM: status %d\n%s", what, status, s.stderr.String())
	}
	if !strings.Contains(s.stderr.String(), want) {
		t.Errorf("%s after SIGTERM does not say %q:\n%s", what, want, s.stderr.String())
	}
	if got := newest(t, run); got != checkpoint.Name(5) {
		t.Errorf("%s: newest checkpoint after SIGTERM at step 5: %s", what, got)
	}
}

// Must-show 3 for `herd worker`: SIGTERM to the worker training a run (held before step
// 6) makes it commit step 5 and exit 0 within --grace, saying so; the run then finishes
// on a second worker, from that checkpoint, with the weights of `herd train`.
func TestWorkerStopsOnSIGTERM(t *testing.T) {
	dir := tinyRun(t)
	steps := []string{"--set", "train.steps=8"}
	if _, stderr, status := herd(t, dir, append([]string{"train", "run.yaml", "--out", "direct"}, steps...)...); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	release, held := holdAt(t, 5)
	addr := start(t, dir, regexp.MustCompile(`^Temporal server \S+ at (\S+),`), "server", "--port", "0", "--state-dir", filepath.Join(dir, "home"))
	first := startHerd(t, dir, "worker", "--temporal", addr, "--grace", graceBound.String())
	if _, stderr, status := herd(t, dir, append([]string{"run", "run.yaml", "--temporal", addr, "--detach"}, steps...)...); status != 0 {
		t.Fatalf("herd run --detach: status %d\n%s", status, stderr)
	}
	first.waitFor(t, "the first worker held at step 5", held)
	run := filepath.Join(dir, "out", "e2e")
	first.sigtermHeldAt5(t, release, "herd worker", run,
		"e2e: stopped by SIGTERM at step 5, checkpoint "+filepath.Join(run, checkpoint.Name(5))+"; another worker of queue herd continues it from there")

	second := startHerd(t, dir, "worker", "--temporal", addr)
	stdout, stderr, status := herd(t, dir, append([]string{"run", "run.yaml", "--temporal", addr, "--json"}, steps...)...)
	if status != 0 {
		t.Fatalf("herd run following the second worker: status %d\n%s", status, stderr)
	}
	var p workflows.Progress
	if err := json.Unmarshal([]byte(stdout), &p); err != nil || p.State != workflows.StateCompleted || p.Step != 8 {
		t.Fatalf("run ended %+v (%v)", p, err)
	}
	if pid := strconv.Itoa(second.cmd.Process.Pid) + "@"; !strings.HasPrefix(p.Worker, pid) {
		t.Errorf("the last segment ran on %q, not on the second worker (pid %s)", p.Worker, pid)
	}
	if got, want := weights(t, filepath.Join(run, checkpoint.Name(8))), weights(t, filepath.Join(dir, "direct", "e2e", checkpoint.Name(8))); got != want {
		t.Errorf("worker stopped by SIGTERM, run finished on another: %s, herd train: %s", got, want)
	}
}

// A step that cannot finish (held through the signal, as a hung step would be) runs out
// the grace period: herd train exits 1 within it, saying so, and the checkpoint before
// (step 4) stays the newest. A second signal does not wait for the grace at all.
func TestTrainGraceRunsOut(t *testing.T) {
	dir := tinyRun(t)
	holds := t.TempDir()
	t.Setenv(stephook.HoldsEnv, holds)
	for _, c := range []struct {
		grace   time.Duration
		signals int
		want    string
	}{
		{time.Second, 1, "herd: SIGTERM: no checkpoint within the grace period (--grace 1s): exiting; the same `herd train` command resumes from the newest checkpoint in " + filepath.Join("out", "e2e")},
		{graceBound, 2, "herd: second SIGTERM: exiting at once, without a checkpoint; the same `herd train` command resumes"},
	} {
		release, err := stephook.Stick(holds, "e2e", 5)
		if err != nil {
			t.Fatal(err)
		}
		s := startHerd(t, dir, "train", "run.yaml", "--set", "train.steps=8", "--grace", c.grace.String())
		s.waitFor(t, "herd train stuck at step 5", func() bool { return stephook.Held(holds, "e2e", 5) })
		if c.signals == 2 {
			s.signal(t, syscall.SIGTERM)
			s.waitFor(t, "herd train to take the first signal", func() bool {
				return strings.Contains(s.stderr.String(), "a second signal exits at once")
			})
		}
		status := s.stop(t, syscall.SIGTERM)
		release()
		if status != 1 || !strings.Contains(s.stderr.String(), c.want) {
			t.Errorf("--grace %s, %d signal(s): status %d, want 1 and %q in\n%s", c.grace, c.signals, status, c.want, s.stderr.String())
		}
		if got := newest(t, filepath.Join(dir, "out", "e2e")); got != checkpoint.Name(4) {
			t.Errorf("newest checkpoint after an exit without one: %s, want the one before, %s", got, checkpoint.Name(4))
		}
	}
}
