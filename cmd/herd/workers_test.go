package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/herdml/herd/workflows"
)

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
