package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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

// `herd eval` refuses a negative --batches, and shows its progress on stderr as
// `herd train` does: not a terminal, plain lines, the last batch always among them.
func TestEvalBatches(t *testing.T) {
	dir := tinyRun(t)
	if _, stderr, status := herd(t, dir, "train", "run.yaml"); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	ckpt := filepath.Join("out", "e2e", "step-00000003")
	stdout, stderr, status := herd(t, dir, "eval", ckpt, "--data", "eval/*.txt", "--batches", "-1")
	wantUserError(t, stdout, stderr, status, "--batches", "-1")

	stdout, stderr, status = herd(t, dir, "eval", ckpt, "--data", "eval/*.txt", "--batches", "3")
	if status != 0 || !strings.Contains(stdout, "in 3 batches") {
		t.Fatalf("herd eval: status %d\n%s%s", status, stdout, stderr)
	}
	if !strings.Contains(stderr, "eval batch 3/3  loss ") || strings.Contains(stderr, "\r") {
		t.Errorf("herd eval's progress on stderr lacks the last batch or rewrites lines:\n%s", stderr)
	}
}
