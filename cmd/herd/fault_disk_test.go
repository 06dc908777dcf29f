package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/herdml/herd/trainer/history"
)

// smallDisk mounts a tmpfs of size bytes on a new folder for the test, or skips where
// mounting needs privileges this process lacks (CI runs as root).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("mounting a tmpfs needs CAP_SYS_ADMIN: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, 0) })
	return dir
}

// TestDiskFullKeepsLastCheckpoint fills the checkpoint disk in the middle of a run: the
// save that does not fit fails with one line naming the folder and the cause (exit 1: the
// machine's, not the config's), leaves no partial folder, and the last committed
// checkpoint stays valid; with room again the same command resumes from it and ends with
// weights bit-identical to a run that never hit the full disk.
func TestDiskFullKeepsLastCheckpoint(t *testing.T) {
	dir := tinyRun(t)
	if _, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "whole"); status != 0 {
		t.Fatalf("uninterrupted run: status %d\n%s", status, stderr)
	}
	want := weights(t, filepath.Join(dir, "whole", "e2e", "step-00000003"))

	// tinyRun's checkpoint is about 460 KiB: the one of step 2 fits in 700 KiB, the next
	// one does not.
	disk := smallDisk(t, "700k")
	stdout, stderr, status := herd(t, dir, "train", "run.yaml", "--out", disk)
	if status != 1 || stdout != "" || strings.Count(stderr, "\n") == 0 {
		t.Fatalf("full disk: status %d, stdout %q, stderr %q; want status 1 and a message", status, stdout, stderr)
	}
	last := strings.TrimSpace(stderr[strings.LastIndexByte(strings.TrimSpace(stderr), '\n')+1:])
	for _, w := range []string{"no space left on device", filepath.Join(disk, "e2e")} {
		if !strings.Contains(last, w) {
			t.Errorf("last stderr line %q does not name %q", last, w)
		}
	}
	run := filepath.Join(disk, "e2e")
	entries, err := os.ReadDir(run)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") || strings.HasPrefix(n, ".tmp-") {
			names = append(names, n)
		}
	}
	if !slices.Equal(names, []string{history.FileName, "step-00000002"}) {
		t.Errorf("after the failed save the run folder holds %v, want the history and step-00000002 alone", names)
	}
	if _, stderr, status := herd(t, dir, "export", filepath.Join(run, "step-00000002"), filepath.Join(dir, "exported")); status != 0 {
		t.Errorf("the last committed checkpoint no longer verifies: status %d\n%s", status, stderr)
	}

	// Room again: the same command resumes from step 2 and ends where the whole run did.
	if err := syscall.Mount("tmpfs", disk, "tmpfs", syscall.MS_REMOUNT, "size=4m"); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status = herd(t, dir, "train", "run.yaml", "--out", disk, "--json")
	if status != 0 || !strings.Contains(stdout, `"resumed_from": "step-00000002"`) {
		t.Fatalf("resume with room: status %d, stdout %s\nstderr %s", status, stdout, stderr)
	}
	if got := weights(t, filepath.Join(run, "step-00000003")); got != want {
		t.Errorf("weights after a full disk and a resume differ from the uninterrupted run's")
	}
}
