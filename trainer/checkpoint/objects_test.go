package checkpoint

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/s3test"
	"github.com/herdml/herd/internal/usererr"
)

// objects opens run prefix rel of the test server's bucket.
func objects(t *testing.T, rel string) Objects {
	t.Helper()
	s, err := OpenRoot(s3test.URL(rel))
	if err != nil {
		t.Fatal(err)
	}
	return s.(Objects)
}

// In a bucket, checkpoints save, verify, load, retain and recover as in a folder; objects
// without a manifest are no checkpoint; Find and At take URLs.
func TestObjects(t *testing.T) {
	s3test.Start(t)
	o := objects(t, "runs/tiny")
	for _, step := range []int64{100, 200, 300} {
		if _, err := Save(o, snapshot(step, float32(step))); err != nil {
			t.Fatal(err)
		}
	}
	// A save cut short: every file but the manifest.
	for _, f := range []string{ModelFile, OptimFile, StateFile} {
		if err := o.B.Put(Name(400)+"/"+f, []byte("partial")); err != nil {
			t.Fatal(err)
		}
	}
	names, err := o.List()
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{Name(100), Name(200), Name(300)}) {
		t.Fatalf("List = %v, %v; want the three committed checkpoints", names, err)
	}
	want := snapshot(300, 300)
	got := dest(want)
	if err := Load(o, Name(300), &got, nil); err != nil || !slices.Equal(got.Model[0].Data, want.Model[0].Data) {
		t.Fatalf("Load: %v, model %v", err, got.Model[0].Data)
	}
	st, name, _, err := Find(s3test.URL("runs/tiny"))
	if err != nil || name != Name(300) || st.(Objects).String() != s3test.URL("runs/tiny") {
		t.Fatalf("Find(run URL) = %v %q %v", st, name, err)
	}
	if _, name, _, err := Find(s3test.URL("runs/tiny/" + Name(200))); err != nil || name != Name(200) {
		t.Fatalf("Find(checkpoint URL) = %q %v", name, err)
	}
	if _, _, _, err := Find(s3test.URL("runs/none")); !usererr.Is(err) || !strings.Contains(err.Error(), s3test.URL("runs/none")) {
		t.Errorf("Find(empty prefix) = %v; want a user error naming it", err)
	}

	// Damage the newest: Recover moves it aside, where neither List nor Retain sees it.
	if err := o.B.Put(Name(300)+"/"+ModelFile, []byte("damaged")); err != nil {
		t.Fatal(err)
	}
	name, warnings, err := Recover(o)
	if err != nil || name != Name(200) || len(warnings) != 1 || !strings.Contains(warnings[0], s3test.URL("runs/tiny/.damaged-"+Name(300))) {
		t.Fatalf("Recover = %q %q %v; want step 200 and a warning naming the aside URL", name, warnings, err)
	}
	keys, _ := o.B.List("")
	if slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, Name(300)+"/") }) {
		t.Errorf("after Recover objects of %s remain under its name: %v", Name(300), keys)
	}
	deleted, err := Retain(o, 1, 0, Name(200))
	if err != nil || !slices.Equal(deleted, []string{Name(100)}) {
		t.Fatalf("Retain(keep 1) deleted %v, %v; want %s", deleted, err, Name(100))
	}
	if keys, _ := o.B.List(Name(100)); len(keys) != 0 {
		t.Errorf("Retain left objects of %s: %v", Name(100), keys)
	}
	if err := o.Rename(Name(200), Name(400)); err != nil {
		t.Fatal(err)
	}
	if err := Verify(o, Name(400)); err != nil {
		t.Errorf("a renamed checkpoint does not verify: %v", err)
	}
	if err := o.Rename(Name(400), Name(400)); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Rename onto a committed name: %v, want fs.ErrExist", err)
	}
}

// A bucket that does not exist is an error naming it, and a checkpoint URL without a
// bucket a user error.
func TestObjectsNoBucket(t *testing.T) {
	s3test.Start(t)
	s, _ := OpenRoot("s3://no-such-bucket/runs")
	if err := s.(Objects).B.Probe(); err == nil || !strings.Contains(err.Error(), "s3://no-such-bucket/runs") {
		t.Errorf("Probe of a missing bucket: %v", err)
	}
	if _, _, err := At("s3://"); !usererr.Is(err) {
		t.Errorf("At(s3://) = %v, want a user error", err)
	}
}

// TestObjectsKilledDuringCommit is TestKilledDuringCommit in a bucket: a process killed
// with SIGKILL while uploading any file of a checkpoint leaves the checkpoint before it
// the newest valid one, the uploaded files of the cut one invisible, and the next save of
// that step verifies.
func TestObjectsKilledDuringCommit(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("the child runs TestKilledDuringCommit")
	}
	srv := s3test.Start(t)
	for _, stop := range []string{ModelFile, OptimFile, StateFile, ManifestFile} {
		t.Run(stop, func(t *testing.T) {
			url := s3test.URL("kill/" + strings.TrimSuffix(stop, ".json"))
			o := objects(t, strings.TrimPrefix(url, s3test.URL("")))
			if _, err := Save(o, snapshot(1, 1)); err != nil {
				t.Fatal(err)
			}
			killWhileCommitting(t, url, stop, srv.Env)

			uploaded, _ := o.B.List(Name(2))
			if stop != ModelFile && len(uploaded) == 0 {
				t.Fatalf("the child uploaded nothing of %s before %s: it was not killed mid-commit", Name(2), stop)
			}
			name, warnings, err := Latest(o)
			if err != nil || name != Name(1) || len(warnings) != 0 {
				t.Fatalf("after a kill in %s: Latest = %q, %v, %v; want %s and no warnings", stop, name, warnings, err, Name(1))
			}
			if _, err := Save(o, snapshot(2, 2)); err != nil {
				t.Fatal(err)
			}
			if name, _, err := Latest(o); err != nil || name != Name(2) {
				t.Errorf("after committing step 2 again: Latest = %q, %v", name, err)
			}
		})
	}
}
