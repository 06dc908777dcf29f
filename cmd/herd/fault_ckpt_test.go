package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/trainer/checkpoint"
)

// trainJSON runs `herd train run.yaml --json --out ckpts` with extra arguments and
// returns its summary and stderr.
func trainJSON(t *testing.T, dir string, args ...string) (trainSummary, string) {
	t.Helper()
	stdout, stderr, status := herd(t, dir, append([]string{"train", "run.yaml", "--json", "--out", "ckpts"}, args...)...)
	if status != 0 {
		t.Fatalf("herd train %s: status %d\n%s", strings.Join(args, " "), status, stderr)
	}
	var sum trainSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("stdout is not one JSON summary: %v\n%s", err, stdout)
	}
	return sum, stderr
}

// checkpointsIn lists the folders of a run's checkpoint folder, sorted.
func checkpointsIn(t *testing.T, run string) (steps, aside []string) {
	t.Helper()
	entries, err := os.ReadDir(run)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), "step-"):
			steps = append(steps, e.Name())
		case strings.HasPrefix(e.Name(), ".damaged-"):
			aside = append(aside, e.Name())
		}
	}
	slices.Sort(steps)
	slices.Sort(aside)
	return steps, aside
}

// With train.checkpoint.keep 3 and the three newest checkpoints damaged (a flipped byte
// in the weights, a truncated optimizer file, a missing manifest), training resumes from
// the newest valid one, moves the damaged ones aside with a warning each, keeps its new
// checkpoints and the newest three valid ones, and a later resume starts from the newest.
func TestTrainPastDamagedCheckpoints(t *testing.T) {
	dir := tinyRun(t)
	run := filepath.Join(dir, "ckpts", "e2e")
	trainJSON(t, dir, "--set", "train.steps=10", "--set", "train.checkpoint.every=1", "--set", "train.checkpoint.keep=10")
	flip := filepath.Join(run, "step-00000010", "model.safetensors")
	b, err := os.ReadFile(flip)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(flip, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(run, "step-00000009", "optim.safetensors"), 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(run, "step-00000008", "manifest.json")); err != nil {
		t.Fatal(err)
	}

	// Checkpoint settings do not change the recipe: the same run goes on with keep 3.
	keep3 := []string{"--set", "train.steps=10", "--set", "train.checkpoint.every=2", "--set", "train.checkpoint.keep=3"}
	sum, stderr := trainJSON(t, dir, keep3...)
	if sum.ResumedFrom != "step-00000007" || sum.Steps != 10 {
		t.Fatalf("resumed from %q to step %d, want step-00000007 to 10\n%s", sum.ResumedFrom, sum.Steps, stderr)
	}
	steps, aside := checkpointsIn(t, run)
	if want := []string{"step-00000007", "step-00000008", "step-00000010"}; !slices.Equal(steps, want) {
		t.Errorf("checkpoints %v, want the newest three valid ones %v", steps, want)
	}
	if len(aside) != 3 {
		t.Fatalf("set aside %v, want the three damaged checkpoints\n%s", aside, stderr)
	}
	for i, step := range []string{"step-00000008", "step-00000009", "step-00000010"} {
		moved := filepath.Join("ckpts", "e2e", aside[i])
		if !strings.HasPrefix(aside[i], ".damaged-"+step+"-") || strings.Count(stderr, "moved it aside to "+moved) != 1 {
			t.Errorf("damaged %s: set aside as %s, want one warning saying so\n%s", step, aside[i], stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(run, aside[0], "model.safetensors")); err != nil {
		t.Errorf("the damaged checkpoint's files were not kept: %v", err)
	}

	// The next resume starts from the newest new checkpoint and warns of nothing.
	sum, stderr = trainJSON(t, dir, keep3...)
	if sum.ResumedFrom != "step-00000010" || strings.Contains(stderr, "warning") {
		t.Errorf("resumed from %q, want step-00000010 without warnings\n%s", sum.ResumedFrom, stderr)
	}
}

// A run folder has one trainer at a time. The test process holds the folder's lock with
// the API herd train uses, so that the first owner is certainly still there when herd
// train starts: herd refuses at once with a user error naming the folder and the holder,
// and trains once the holder lets go.
func TestTrainRefusesAHeldRunFolder(t *testing.T) {
	dir := tinyRun(t)
	run := filepath.Join(dir, "ckpts", "e2e")
	lock, err := checkpoint.LockDir(run)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "ckpts")
	wantUserError(t, stdout, stderr, status, filepath.Join("ckpts", "e2e")+": run folder in use",
		fmt.Sprintf("held by pid %d on host ", os.Getpid()), ", command "+os.Args[0])
	if steps, _ := checkpointsIn(t, run); len(steps) != 0 {
		t.Errorf("the refused herd train wrote %v", steps)
	}
	if err := lock.Close(); err != nil {
		t.Fatal(err)
	}
	if sum, _ := trainJSON(t, dir); sum.Steps != 3 {
		t.Errorf("after the holder closed the lock: %+v, want 3 steps trained", sum)
	}
}
