package checkpoint

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// damage breaks checkpoints of st the three ways a disk or a person does: a flipped byte
// in the weights, a truncated optimizer file, a missing manifest.
func damage(t *testing.T, st Dir, flipped, truncated, unlisted string) {
	t.Helper()
	p := filepath.Join(st.Root, flipped, ModelFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p = filepath.Join(st.Root, truncated, OptimFile)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(st.Root, unlisted, ManifestFile)); err != nil {
		t.Fatal(err)
	}
}

func saveSteps(t *testing.T, st Dir, steps ...int64) {
	t.Helper()
	for _, step := range steps {
		if _, err := Save(st, snapshot(step, float32(step))); err != nil {
			t.Fatal(err)
		}
	}
}

func listed(t *testing.T, st Dir) []string {
	t.Helper()
	names, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// Recover moves every damaged checkpoint newer than the one it returns aside, saying where
// in one warning each; the run then saves those steps afresh, retention keeps the newest
// whole checkpoints, and nothing herd set aside is deleted or listed again.
func TestRecoverSetsDamagedAside(t *testing.T) {
	st := Dir{Root: filepath.Join(t.TempDir(), "run")}
	saveSteps(t, st, 1, 2, 3, 4, 5, 6, 7)
	damage(t, st, "step-00000007", "step-00000006", "step-00000005")

	name, warnings, err := Recover(st)
	if err != nil || name != "step-00000004" {
		t.Fatalf("Recover = %q, %v; want step-00000004", name, err)
	}
	if len(warnings) != 3 {
		t.Fatalf("warnings %q, want one per damaged checkpoint", warnings)
	}
	aside, _ := filepath.Glob(filepath.Join(st.Root, ".damaged-*"))
	if len(aside) != 3 {
		t.Fatalf("set aside %v, want 3 folders", aside)
	}
	for i, w := range warnings {
		n := Name(int64(7 - i))
		moved, _ := filepath.Glob(filepath.Join(st.Root, ".damaged-"+n+"-*"))
		if len(moved) != 1 || !strings.Contains(w, n) || !strings.Contains(w, "moved it aside to "+moved[0]) {
			t.Errorf("warning %q: want it to name %s and where it went (%v)", w, n, moved)
		}
		if strings.Contains(w, "name another checkpoint") {
			t.Errorf("warning %q gives the advice for a checkpoint the user named", w)
		}
	}
	if got, want := listed(t, st), []string{"step-00000001", "step-00000002", "step-00000003", "step-00000004"}; !slices.Equal(got, want) {
		t.Fatalf("listed %v after Recover, want %v", got, want)
	}

	// Training on saves steps 5-7 again, each followed by retention with keep 3.
	for step := int64(5); step <= 7; step++ {
		name, err := Save(st, snapshot(step, 1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Retain(st, 3, 0, name); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := listed(t, st), []string{"step-00000005", "step-00000006", "step-00000007"}; !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	if again, _ := filepath.Glob(filepath.Join(st.Root, ".damaged-*")); !slices.Equal(again, aside) {
		t.Fatalf("set-aside folders now %v, want %v untouched", again, aside)
	}
	if name, warnings, err := Latest(st); name != "step-00000007" || len(warnings) != 0 || err != nil {
		t.Fatalf("Latest = %q, %q, %v; want step-00000007 and no warning", name, warnings, err)
	}
}

// Retention counts only whole checkpoints: damaged folders newer than the newest whole one
// are neither counted among the keep nor deleted, and the checkpoint just written survives
// even when newer ones exist.
func TestRetainCountsWholeCheckpoints(t *testing.T) {
	st := Dir{Root: filepath.Join(t.TempDir(), "run")}
	saveSteps(t, st, 1, 2, 3, 4, 6, 7, 8)
	// 8 is damaged only in a way a size check cannot see: it is counted as whole.
	damage(t, st, "step-00000008", "step-00000007", "step-00000006")
	saveSteps(t, st, 5)

	deleted, err := Retain(st, 3, 0, "step-00000005")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"step-00000003", "step-00000002", "step-00000001"}; !slices.Equal(deleted, want) {
		t.Errorf("deleted %v, want %v", deleted, want)
	}
	if got, want := listed(t, st), []string{"step-00000004", "step-00000005", "step-00000006", "step-00000007", "step-00000008"}; !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}

	// Three newer whole checkpoints: the one just written is kept all the same.
	st = Dir{Root: filepath.Join(t.TempDir(), "run")}
	saveSteps(t, st, 2, 3, 4, 1)
	if deleted, err := Retain(st, 3, 0, "step-00000001"); err != nil || len(deleted) != 0 {
		t.Fatalf("Retain deleted %v (%v); want the checkpoint just written kept", deleted, err)
	}
}

// The advice in an error about a damaged checkpoint fits who picked it: the user, who
// should name another, or herd looking for the newest valid one, which skips it.
func TestDamagedCheckpointAdvice(t *testing.T) {
	st := Dir{Root: filepath.Join(t.TempDir(), "run")}
	saveSteps(t, st, 1, 2)
	damage(t, st, "step-00000002", "step-00000002", "step-00000001")
	if err := os.WriteFile(filepath.Join(st.Root, "step-00000001", ManifestFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}

	err := Verify(st, "step-00000002")
	if !usererr.Is(err) || !strings.Contains(err.Error(), "name another checkpoint, or the run's folder") {
		t.Fatalf("Verify of a damaged checkpoint: %v; want a user error saying to name another", err)
	}
	_, warnings, err := Latest(st)
	if err != ErrNone || len(warnings) != 2 {
		t.Fatalf("Latest: %q, %v", warnings, err)
	}
	for _, w := range warnings {
		if !strings.Contains(w, "looking for the newest valid one") || strings.Contains(w, "name another") || strings.Contains(w, "omit the path") {
			t.Errorf("warning %q: want it to say herd skipped it while looking for the newest valid one, and no advice to name another", w)
		}
	}
}
