package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
)

// Must show 4: a completed 4-step wsd run whose decay lies ahead (decay_start 6), resumed
// with --steps 8, ends with the weights of an 8-step run whose decay begins at the same
// step. Extending it again past its decay must say how; a restart with a new peak LR is
// printed, shown by `herd status` and kept in the checkpoint's state. What the checkpoint
// holds stays refused, naming both values.
func TestResumeLongerAndLineage(t *testing.T) {
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	wsd := []string{"--set", "train.schedule.decay=wsd", "--set", "train.schedule.decay_start=6"}
	if _, stderr, status := herd(t, dir, append([]string{"run", "run.yaml", "--set", "train.steps=4"}, wsd...)...); status != 0 {
		t.Fatalf("herd run: status %d\n%s", status, stderr)
	}
	_, stderr, status := herd(t, dir, "resume", "e2e", "--steps", "8")
	if status != 0 || !strings.Contains(stderr, "e2e: changed at step 4: train.steps 4 -> 8") {
		t.Fatalf("herd resume --steps 8 of the completed run: status %d, want 0 and the change printed\n%s", status, stderr)
	}
	if _, stderr, status := herd(t, dir, append([]string{"train", "run.yaml", "--set", "train.steps=8", "--out", "ref"}, wsd...)...); status != 0 {
		t.Fatalf("herd train of 8 steps: status %d\n%s", status, stderr)
	}
	last := checkpoint.Name(8)
	if got, want := weights(t, filepath.Join(dir, "out", "e2e", last)), weights(t, filepath.Join(dir, "ref", "e2e", last)); got != want {
		t.Errorf("4 steps resumed to 8 and 8 steps differ: %s vs %s", got, want)
	}

	stdout, stderr, status := herd(t, dir, "resume", "e2e", "--steps", "10")
	wantUserError(t, stdout, stderr, status, "decay began after step 6", "--schedule restart", "--schedule stretch")
	stdout, stderr, status = herd(t, dir, "resume", "e2e", "--steps", "10", "--set", "model.d_model=64")
	wantUserError(t, stdout, stderr, status, "model.d_model", "the run has 32, this asks 64")

	_, stderr, status = herd(t, dir, "resume", "e2e", "--steps", "10", "--schedule", "restart", "--lr", "0.001")
	if status != 0 || !strings.Contains(stderr, "changed at step 8: train.optim.lr 0.003 -> 0.001") {
		t.Fatalf("herd resume --schedule restart --lr: status %d, want 0 and the new LR printed\n%s", status, stderr)
	}
	stdout, stderr, status = herd(t, dir, "status", "e2e")
	for _, want := range []string{"10 of 10 committed", "at step 4: train.steps 4 -> 8", "at step 8: train.optim.lr 0.003 -> 0.001", "at step 8: train.schedule.start absent -> 8"} {
		if status != 0 || !strings.Contains(stdout, want) {
			t.Errorf("herd status lacks %q: status %d\n%s%s", want, status, stdout, stderr)
		}
	}
	// The completed run was started again twice under its name: `herd ls` (and the
	// dashboard, through the same list) shows it once, as its newest execution.
	stdout, stderr, status = herd(t, dir, "ls", "--json")
	var listed []struct{ Name, State string }
	if err := json.Unmarshal([]byte(stdout), &listed); status != 0 || err != nil {
		t.Fatalf("herd ls --json: status %d, %v\n%s%s", status, err, stdout, stderr)
	}
	if len(listed) != 1 || listed[0].Name != "e2e" || listed[0].State != "completed" {
		t.Errorf("herd ls --json after two resumes: %+v, want e2e once, completed", listed)
	}
	b, err := os.ReadFile(filepath.Join(dir, "out", "e2e", checkpoint.Name(10), checkpoint.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var st checkpoint.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []config.Change{{Step: 4, Key: "train.steps", Was: "4", Now: "8"}, {Step: 8, Key: "train.optim.lr", Was: "0.003", Now: "0.001"}} {
		if !slices.Contains(st.Lineage, want) {
			t.Errorf("state.json lineage %v lacks %v", st.Lineage, want)
		}
	}
}

// A cosine run does not extend by itself: the refusal names both ways. Stretched, with a
// new min_lr_ratio, in metap mode, the resume also says how the new horizon moves the LR.
func TestResumeCosineSaysHow(t *testing.T) {
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	if _, stderr, status := herd(t, dir, "run", "run.yaml", "--set", "metap.mode=metap"); status != 0 {
		t.Fatalf("herd run: status %d\n%s", status, stderr)
	}
	stdout, stderr, status := herd(t, dir, "resume", "e2e", "--steps", "6")
	wantUserError(t, stdout, stderr, status, "cosine", "--schedule restart", "--schedule stretch")
	_, stderr, status = herd(t, dir, "resume", "e2e", "--steps", "6", "--schedule", "stretch", "--set", "train.schedule.min_lr_ratio=0.05")
	if status != 0 || !strings.Contains(stderr, "train.steps 3 -> 6") || !strings.Contains(stderr, "train.schedule.min_lr_ratio 0.1 -> 0.05") || !strings.Contains(stderr, "e2e: note at step 3: train.steps is the MetaP horizon") || !strings.Contains(stderr, "0.8123 times") {
		t.Errorf("herd resume --schedule stretch: status %d\n%s", status, stderr)
	}
}
