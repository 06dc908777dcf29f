package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/workflows"
)

// start runs the binary in dir in the background until the test ends, and returns the
// first line of its stdout that matches re (submatch 1), waiting up to five minutes: a
// bound on a hang, however slow and loaded the machine.
func start(t *testing.T, dir string, re *regexp.Regexp, args ...string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HERD_TEST_MAIN=1")
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("herd %s:\n%s", strings.Join(args, " "), errb.String())
		}
	})
	if re == nil {
		return ""
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				return
			}
		}
	}()
	select {
	case s := <-found:
		return s
	case <-time.After(5 * time.Minute):
		t.Fatalf("herd %s printed no line matching %s", strings.Join(args, " "), re)
		return ""
	}
}

// Must-show 6, as the README recipe runs it: `herd server`, two `herd worker --ranks 1`
// processes and `herd run` with parallel.data: 2 against them. One rank trains on each
// worker, and the run ends with the weights that `herd train` computes on one rank.
func TestRunTwoWorkers(t *testing.T) {
	dir := tinyRun(t)
	home := filepath.Join(dir, "home")
	addr := start(t, dir, regexp.MustCompile(`^Temporal server \S+ at (\S+),`), "server", "--port", "0", "--state-dir", home)
	for range 2 {
		start(t, dir, nil, "worker", "--temporal", addr, "--ranks", "1")
	}
	stdout, stderr, status := herd(t, dir, "run", "run.yaml", "--temporal", addr, "--set", "parallel.data=2", "--json")
	if status != 0 {
		t.Fatalf("herd run: status %d\n%s", status, stderr)
	}
	var p workflows.Progress
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatalf("stdout is not the run's JSON progress: %v\n%s", err, stdout)
	}
	if p.State != workflows.StateCompleted || p.Step != 3 {
		t.Fatalf("run ended %+v", p)
	}
	if _, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "direct"); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	if got, want := weights(t, filepath.Join(p.Dir, p.Checkpoint)), weights(t, filepath.Join(dir, "direct", "e2e", p.Checkpoint)); got != want {
		t.Errorf("2 ranks on 2 workers and herd train on one rank differ: %s vs %s", got, want)
	}
}
