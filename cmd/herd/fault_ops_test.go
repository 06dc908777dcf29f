package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/herdml/herd/internal/stephook"
)

// A second `herd run` under a running or completed run's name attaches only when its
// whole config matches: other data or another checkpoint dir is a user error naming each
// key that differs with both values, and nothing is trained.
func TestRunSameNameOtherConfig(t *testing.T) {
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	if _, stderr, status := herd(t, dir, "run", "run.yaml"); status != 0 {
		t.Fatalf("herd run: status %d\n%s", status, stderr)
	}
	stdout, stderr, status := herd(t, dir, "run", "run.yaml", "--set", "data.train=eval/*.txt", "--set", "train.checkpoint.dir=other")
	wantUserError(t, stdout, stderr, status, "run e2e",
		`data.train: "`+filepath.Join(dir, "train/*.txt")+`" (completed) vs "`+filepath.Join(dir, "eval/*.txt")+`" (this launch)`,
		`train.checkpoint.dir: "`+filepath.Join(dir, "out")+`" (completed) vs "`+filepath.Join(dir, "other")+`" (this launch)`)
	if _, err := os.Stat(filepath.Join(dir, "other")); !os.IsNotExist(err) {
		t.Errorf("the refused launch wrote checkpoints (%v)", err)
	}
}

// `herd ls --json` with no runs prints an empty JSON list, not null.
func TestLsJSONNoRuns(t *testing.T) {
	t.Setenv("HERD_HOME", filepath.Join(t.TempDir(), "home"))
	stdout, stderr, status := herd(t, t.TempDir(), "ls", "--json")
	if status != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("herd ls --json with no runs: status %d, stdout %q, want []\n%s", status, stdout, stderr)
	}
}

// evalCheckpoint trains the tiny run and returns its folder and final checkpoint.
func evalCheckpoint(t *testing.T) (dir, ckpt string) {
	t.Helper()
	dir = tinyRun(t)
	if _, stderr, status := herd(t, dir, "train", "run.yaml"); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	return dir, filepath.Join("out", "e2e", "step-00000003")
}

// `herd eval --batches -1` is a user error naming --batches, not the run's default.
func TestEvalNegativeBatches(t *testing.T) {
	dir, ckpt := evalCheckpoint(t)
	stdout, stderr, status := herd(t, dir, "eval", ckpt, "--data", "eval/*.txt", "--batches", "-1")
	wantUserError(t, stdout, stderr, status, "--batches", "-1")
}

// `herd eval` shows its progress on stderr as `herd train` does: not on a terminal, plain
// lines, the last batch always among them.
func TestEvalProgress(t *testing.T) {
	dir, ckpt := evalCheckpoint(t)
	stdout, stderr, status := herd(t, dir, "eval", ckpt, "--data", "eval/*.txt", "--batches", "3")
	if status != 0 || !strings.Contains(stdout, "in 3 batches") {
		t.Fatalf("herd eval: status %d\n%s%s", status, stdout, stderr)
	}
	if !strings.Contains(stderr, "eval batch 3/3  loss ") || strings.Contains(stderr, "\r") {
		t.Errorf("herd eval's progress on stderr lacks the last batch or rewrites lines:\n%s", stderr)
	}
}

// The hints herd prints name the state dir when it is not the default one: after Ctrl-C
// stops following a run, `herd status` and `herd resume` are given with --state-dir.
func TestHintsCarryStateDir(t *testing.T) {
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	state := filepath.Join(dir, "state")
	// Held before its second step, the run is still going when Ctrl-C comes.
	holds := t.TempDir()
	t.Setenv(stephook.HoldsEnv, holds)
	release, err := stephook.Hold(holds, "e2e", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	cmd := herdCmd(t, dir, nil, "run", "run.yaml", "--state-dir", state)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// The intro line comes once the run is submitted and followed: then interrupt.
	lines := bufio.NewScanner(stderr)
	var out strings.Builder
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "on the embedded Temporal server") {
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	rest, _ := io.ReadAll(stderr)
	out.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("herd run after Ctrl-C: %v\n%s", err, out.String())
	}
	noStackTrace(t, cmd.Args, out.String())
	for _, want := range []string{"`herd status e2e --state-dir " + state + "` shows it", "`herd resume e2e --state-dir " + state + "` continues it"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, out.String())
		}
	}
}

// A herd process that holds the state dir but does not answer is reported as such, not as
// an unreachable --temporal the user never gave.
func TestStateDirServerNotAnswering(t *testing.T) {
	t.Setenv("HERD_HOME", filepath.Join(t.TempDir(), "home"))
	state := t.TempDir()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing answers there now
	if err := os.WriteFile(filepath.Join(state, "server.addr"), []byte(addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// This test holds the lock, as the serving process would.
	lock, err := os.OpenFile(filepath.Join(state, "server.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"resume", "e2e"}, {"ls"}} {
		stdout, stderr, status := herd(t, t.TempDir(), append(args, "--state-dir", state)...)
		wantUserError(t, stdout, stderr, status, "--state-dir "+state, "serving this state dir at "+addr+" does not answer")
		if strings.Contains(stderr, "--temporal") {
			t.Errorf("herd %s blames --temporal, which was never given: %s", args[0], stderr)
		}
	}
}
