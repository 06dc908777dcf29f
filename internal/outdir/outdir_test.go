package outdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// Check refuses, as a user error naming the path, what even root cannot write, and
// accepts a new or existing folder without leaving anything in it.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.txt")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"/proc/p4", "/proc/self/x/y", file, filepath.Join(file, "x", "y"), ""} {
		err := Check(bad, "the test's output")
		if !usererr.Is(err) || !strings.Contains(err.Error(), bad) {
			t.Errorf("Check(%q) = %v, want a user error naming it", bad, err)
		}
	}
	for _, good := range []string{dir, filepath.Join(dir, "a", "b")} {
		if err := Check(good, "the test's output"); err != nil {
			t.Errorf("Check(%q) = %v", good, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("Check left %v behind", entries)
	}
}

// Make reports the topmost folder it made, and nothing when the folder was there.
func TestMake(t *testing.T) {
	dir := t.TempDir()
	created, err := Make(filepath.Join(dir, "a", "b", "c"))
	if err != nil || created != filepath.Join(dir, "a") {
		t.Fatalf("Make = %q, %v; want %q", created, err, filepath.Join(dir, "a"))
	}
	if fi, err := os.Stat(filepath.Join(dir, "a", "b", "c")); err != nil || !fi.IsDir() {
		t.Fatalf("no folder made: %v", err)
	}
	if created, err := Make(filepath.Join(dir, "a", "b")); err != nil || created != "" {
		t.Fatalf("Make of an existing folder = %q, %v; want \"\"", created, err)
	}
}

// CheckFile wants a file in an existing folder that herd can write.
func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.png")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"/proc/p.png", dir, filepath.Join(dir, "no", "p.png"), filepath.Join(file, "p.png"), ""} {
		err := CheckFile(bad, "the plots")
		if !usererr.Is(err) || !strings.Contains(err.Error(), bad) {
			t.Errorf("CheckFile(%q) = %v, want a user error naming it", bad, err)
		}
	}
	for _, good := range []string{file, filepath.Join(dir, "new.png")} {
		if err := CheckFile(good, "the plots"); err != nil {
			t.Errorf("CheckFile(%q) = %v", good, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("CheckFile left %v behind", entries)
	}
}
