package main

import (
	"os"
	"path/filepath"
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
