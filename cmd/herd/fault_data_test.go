package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// files lists what dir holds, recursively, as paths relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		names = append(names, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// Packing inputs that hold no text is the error training on them is, word for word, and
// leaves no output folder behind.
func TestPackOfEmptyFilesIsTrainsError(t *testing.T) {
	dir := tinyRun(t)
	for _, name := range []string{"train/a.txt", "train/b.txt"} {
		if err := os.Truncate(filepath.Join(dir, name), 0); err != nil {
			t.Fatal(err)
		}
	}
	stdout, trainErr, status := herd(t, dir, "train", "run.yaml")
	wantUserError(t, stdout, trainErr, status, "train/*.txt: selects no non-empty file")
	stdout, packErr, status := herd(t, dir, "data", "pack", "--quiet", "--text", "train/*.txt", "--out", "ds")
	wantUserError(t, stdout, packErr, status)
	if packErr != trainErr {
		t.Errorf("pack says %q, train says %q: want the same error", packErr, trainErr)
	}
	if _, err := os.Stat(filepath.Join(dir, "ds")); !os.IsNotExist(err) {
		t.Errorf("the failed pack left its output folder (%v)", err)
	}
}

// A destination herd cannot write (a path under /proc, a path through a file, a file
// where a folder must be) is a user error naming it, found before any work: nothing is
// written, and herd train trains no step.
func TestImpossibleDestinations(t *testing.T) {
	dir := tinyRun(t)
	// a checkpoint to export and evaluate, in its own folder so that the listing below
	// sees only what the failing commands do
	if _, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "ckpts"); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	ckpt := filepath.Join("ckpts", "e2e", "step-00000003")
	before := files(t, dir)
	for _, tc := range []struct {
		args []string
		want string // the path the message must name
	}{
		{[]string{"data", "pack", "--quiet", "--text", "train/*.txt", "--out", "/proc/p4"}, "/proc/p4"},
		{[]string{"data", "pack", "--quiet", "--text", "train/*.txt", "--out", "run.yaml/ds"}, "run.yaml is a file"},
		{[]string{"data", "pack", "--quiet", "--text", "train/*.txt", "--out", "run.yaml"}, "run.yaml is a file"},
		{[]string{"export", ckpt, "/proc/x"}, "/proc/x"},
		{[]string{"export", ckpt, "run.yaml"}, "run.yaml is a file"},
		{[]string{"export", ckpt, "train/a.txt/x"}, "train/a.txt is a file"},
		{[]string{"eval", "run.yaml", "--data", "eval/*.txt"}, "run.yaml: is a file, not a checkpoint folder"},
		{[]string{"eval", "run.yaml/step-00000003", "--data", "eval/*.txt"}, "run.yaml/step-00000003: is a file"},
		{[]string{"export", "run.yaml", "x"}, "run.yaml: is a file, not a checkpoint folder"},
		{[]string{"train", "run.yaml", "--out", "/proc/p4"}, "/proc/p4/e2e"},
		{[]string{"train", "run.yaml", "--set", "train.checkpoint.dir=run.yaml"}, "run.yaml is a file"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, status := herd(t, dir, tc.args...)
			// one line on stderr: herd train prints its "kernels:" line and a line per step
			// only once it trains
			wantUserError(t, stdout, stderr, status, tc.want)
			if got := files(t, dir); !slices.Equal(got, before) {
				t.Errorf("the folder changed: %v, was %v", got, before)
			}
		})
	}
}

// herd sweep checks its results folder before it starts the server or any trial.
func TestSweepToAnImpossibleFolder(t *testing.T) {
	dir := tinyRun(t)
	home := filepath.Join(dir, "home")
	t.Setenv("HERD_HOME", home)
	const sweep = "name: s\nbase: run.yaml\nspace: {train.optim.lr: {values: [1.0e-3, 1.0e-2]}}\n"
	if err := os.WriteFile(filepath.Join(dir, "s.yaml"), []byte(sweep), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status := herd(t, dir, "sweep", "s.yaml", "--out", "/proc/p4")
	wantUserError(t, stdout, stderr, status, "/proc/p4")
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("%s exists: the sweep started before its results folder was refused", home)
	}
}

// herd run refuses a checkpoint folder it cannot write in its first segment, before any
// step, as a user error that ends the run (no retries).
func TestRunToAnImpossibleFolder(t *testing.T) {
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	stdout, stderr, status := herd(t, dir, "run", "run.yaml", "--set", "train.checkpoint.dir=/proc/p4")
	if status != 2 || stdout != "" || !strings.Contains(stderr, "/proc/p4/e2e: cannot write checkpoints") {
		t.Fatalf("status %d, want 2 naming /proc/p4/e2e\nstdout: %s\nstderr: %s", status, stdout, stderr)
	}
	for _, trained := range []string{"step 1/3", "step 2/3", "step 3/3"} {
		if strings.Contains(stderr, trained) {
			t.Errorf("the run trained (%q) before refusing its checkpoint folder:\n%s", trained, stderr)
		}
	}
}

// herd metap coord-check checks its --png file before it trains any model.
func TestCoordCheckToAnImpossibleFile(t *testing.T) {
	dir := tinyRun(t)
	for _, png := range []string{"/proc/coord.png", "train/a.txt/coord.png", "train"} {
		stdout, stderr, status := herd(t, dir, "metap", "coord-check", "run.yaml", "--widths", "32,64", "--steps", "1",
			"--seeds", "1", "--png", png)
		wantUserError(t, stdout, stderr, status, png) // nothing on stdout: no table, so no model trained
	}
}
