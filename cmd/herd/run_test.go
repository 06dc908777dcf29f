package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/client"
)

// weights is the sha256 of a checkpoint's weights and optimizer state.
func weights(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	for _, f := range []string{"model.safetensors", "optim.safetensors"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// `herd run` on the embedded server, as a user runs it: the orchestrated run ends with
// the same weights and optimizer state as `herd train`; ls and status see it; running it
// again attaches to the completed run instead of training it twice.
func TestRunEmbedded(t *testing.T) {
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	stdout, stderr, status := herd(t, dir, "run", "run.yaml", "--json")
	if status != 0 {
		t.Fatalf("herd run: status %d\n%s", status, stderr)
	}
	var p workflows.Progress
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatalf("stdout is not the run's JSON progress: %v\n%s", err, stdout)
	}
	if p.State != workflows.StateCompleted || p.Step != 3 || p.Checkpoint != "step-00000003" {
		t.Fatalf("run ended %+v", p)
	}
	if want := filepath.Join(dir, "out", "e2e"); p.Dir != want {
		t.Errorf("checkpoints in %q, want %q (relative paths resolved where herd run ran)", p.Dir, want)
	}
	if _, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "direct"); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	if got, want := weights(t, filepath.Join(p.Dir, p.Checkpoint)), weights(t, filepath.Join(dir, "direct", "e2e", p.Checkpoint)); got != want {
		t.Errorf("herd run and herd train differ: %s vs %s", got, want)
	}

	stdout, stderr, status = herd(t, dir, "ls", "--json")
	var runs []client.Status
	if status != 0 || json.Unmarshal([]byte(stdout), &runs) != nil || len(runs) != 1 || runs[0].Name != "e2e" || runs[0].State != workflows.StateCompleted {
		t.Fatalf("herd ls: status %d, %s%s", status, stdout, stderr)
	}
	stdout, stderr, status = herd(t, dir, "status", "e2e")
	for _, want := range []string{"completed", "3 of 3 committed", "step-00000002 step-00000003"} {
		if status != 0 || !strings.Contains(stdout, want) {
			t.Errorf("herd status lacks %q: status %d\n%s%s", want, status, stdout, stderr)
		}
	}
	stdout, stderr, status = herd(t, dir, "run", "run.yaml")
	if status != 0 || !strings.Contains(stdout, "completed at step 3/3") {
		t.Errorf("second herd run: status %d\n%s%s", status, stdout, stderr)
	}
	_, stderr, status = herd(t, dir, "run", "run.yaml", "--set", "train.steps=5")
	if status != 2 || !strings.Contains(stderr, "another training config") {
		t.Errorf("herd run of another config under the same name: status %d, want 2\n%s", status, stderr)
	}
}

// `herd run --steps N` trains N steps, as `herd train --steps N` does: it sets
// train.steps, after any --set.
func TestRunSteps(t *testing.T) {
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	stdout, stderr, status := herd(t, dir, "run", "run.yaml", "--set", "train.steps=5", "--steps", "2", "--json")
	if status != 0 {
		t.Fatalf("herd run --steps 2: status %d\n%s", status, stderr)
	}
	var p workflows.Progress
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatalf("stdout is not the run's JSON progress: %v\n%s", err, stdout)
	}
	if p.State != workflows.StateCompleted || p.Step != 2 || p.Steps != 2 {
		t.Fatalf("herd run --steps 2 ended %+v, want completed at step 2 of 2", p)
	}
}

// A diverging recipe ends `herd run` with status 2 and the step that went non-finite;
// user mistakes in the orchestration flags are status 2 as well.
func TestRunUserErrors(t *testing.T) {
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	_, stderr, status := herd(t, dir, "run", "run.yaml", "--set", "train.optim.lr=1e12", "--set", "train.optim.clip=0", "--set", "train.schedule.warmup=0")
	if status != 2 || !strings.Contains(stderr, "non-finite") || !strings.Contains(stderr, "step ") {
		t.Errorf("diverging run: status %d, want 2 naming the step\n%s", status, stderr)
	}
	for _, args := range [][]string{
		{"run", "run.yaml", "--detach"},
		{"status", "nope"},
		{"worker"},
	} {
		if _, stderr, status := herd(t, dir, args...); status != 2 {
			t.Errorf("herd %s: status %d, want 2\n%s", strings.Join(args, " "), status, stderr)
		}
	}
}

// Without a driver, `herd gpus` says so in a sentence; with one it lists the devices.
func TestGPUs(t *testing.T) {
	stdout, stderr, status := herd(t, t.TempDir(), "gpus")
	if status != 0 || !(strings.Contains(stdout, "No NVIDIA driver") || strings.Contains(stdout, "MEMORY USED/TOTAL")) {
		t.Errorf("herd gpus: status %d\n%s%s", status, stdout, stderr)
	}
}
