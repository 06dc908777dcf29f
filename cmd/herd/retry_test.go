package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/workflows"
)

// Retry flags that cannot work are refused before a run is submitted or anything written.
func TestRetryFlagsUserErrors(t *testing.T) {
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-attempts", "-1"}, "give 0 (unlimited) or more"},
		{[]string{"--retry-initial", "0s"}, "--retry-initial: 0s; give a positive duration"},
		{[]string{"--retry-initial", "2m", "--retry-max", "1m"}, "--retry-max: 1m0s is shorter than --retry-initial 2m0s"},
	} {
		stdout, stderr, status := herd(t, dir, append([]string{"run", "run.yaml"}, c.args...)...)
		wantUserError(t, stdout, stderr, status, c.want)
	}
	for _, p := range []string{"out", "home"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused retry flags left %s: %v", p, err)
		}
	}
}

// `herd run --max-attempts 0` retries a failing segment without limit (here: another
// owner holds the run folder, a retryable error), past the default 5 attempts, with
// --retry-initial's short backoff; `herd status` shows the attempt and that it has no
// limit, and the run completes once the folder is free.
func TestRunUnlimitedAttempts(t *testing.T) {
	dir := tinyRun(t)
	lock, err := checkpoint.LockDir(filepath.Join(dir, "out", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	addr := start(t, dir, regexp.MustCompile(`^Temporal server \S+ at (\S+),`), "server", "--port", "0", "--state-dir", filepath.Join(dir, "home"))
	start(t, dir, nil, "worker", "--temporal", addr)
	run := []string{"run", "run.yaml", "--temporal", addr}
	if _, stderr, status := herd(t, dir, append(run, "--detach", "--max-attempts", "0", "--retry-initial", "10ms", "--retry-max", "20ms")...); status != 0 {
		t.Fatalf("herd run --detach: status %d\n%s", status, stderr)
	}
	attempt := regexp.MustCompile(`(?m)^attempt\s+(\d+) \(no limit\)$`)
	var out string
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		out, _, _ = herd(t, dir, "status", "e2e", "--temporal", addr)
		if m := attempt.FindStringSubmatch(out); m != nil {
			if n, _ := strconv.Atoi(m[1]); n > workflows.DefaultMaxAttempts+1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("herd status never showed an attempt past %d without limit:\n%s", workflows.DefaultMaxAttempts+1, out)
		}
	}
	if err := lock.Close(); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status := herd(t, dir, append(run, "--json")...)
	var p workflows.Progress
	if status != 0 || json.Unmarshal([]byte(stdout), &p) != nil || p.State != workflows.StateCompleted || p.Step != 3 {
		t.Fatalf("herd run following: status %d\n%s%s", status, stdout, stderr)
	}
}
