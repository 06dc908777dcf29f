package data

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// manyDocs emits n documents of 40 bytes, then fails with fail (nil: succeeds). With the
// small rows and shards of failingPack, the documents before the failure fill several
// complete shards, so that a failed pack has renamed shards as well as a temporary one to
// remove.
func manyDocs(n int, fail error) func(emit func(*RawDoc) error) error {
	return func(emit func(*RawDoc) error) error {
		for i := range n {
			if err := emit(&RawDoc{Where: "doc", Text: []byte(strings.Repeat(string(rune('a'+i%26)), 40))}); err != nil {
				return err
			}
		}
		return fail
	}
}

func smallPack(out string) PackOptions {
	return PackOptions{Out: out, SeqLen: 7, ShardRows: 3, BatchRows: 2}
}

func listDir(t *testing.T, dir string) []string {
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

// Shards and the manifest are created 0666 less the umask, like any tool's output, so
// that a worker running as another user can read them.
func TestPackFilesFollowTheUmask(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := Pack(manyDocs(10, nil), smallPack(dir)); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 3 {
		t.Fatalf("want a manifest and several shards, got %d files", len(entries))
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want -rw-r--r-- (0666 less umask 022)", e.Name(), fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("folder mode %v (%v), want drwxr-xr-x", fi.Mode().Perm(), err)
	}
}

// A pack that fails, whatever the cause (bad input, Ctrl-C), removes what it made: the
// output folder when it made it (parents included), and only its own files when the
// folder was there before, never the files already in it: a dataset packed there before
// still verifies.
func TestFailedPackRemovesWhatItWrote(t *testing.T) {
	bad := usererr.New("input.jsonl:31", "not a JSON object")
	for _, tc := range []struct {
		name     string
		fail     error // what the input fails with after 30 documents
		cancelAt int   // cancel the pack's context at this document (0 = never)
		want     error
	}{
		{"bad input", bad, 0, bad},
		{"interrupted", nil, 20, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pack := func(out string) error {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				n := 0
				read := func(emit func(*RawDoc) error) error {
					return manyDocs(30, tc.fail)(func(d *RawDoc) error {
						if n++; n == tc.cancelAt {
							cancel()
						}
						return emit(d)
					})
				}
				o := smallPack(out)
				o.Ctx = ctx
				_, err := Pack(read, o)
				return err
			}

			root := t.TempDir()
			if err := pack(filepath.Join(root, "new", "out")); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got := listDir(t, root); !slices.Equal(got, []string{"."}) {
				t.Errorf("a failed pack into a new folder left %v", got)
			}

			mine := filepath.Join(root, "mine")
			if _, err := Pack(manyDocs(5, nil), smallPack(mine)); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"notes.txt", "old/keep.arrow"} {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(mine, p)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(mine, p), []byte("the user's"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			before := listDir(t, mine)
			if err := pack(mine); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got := listDir(t, mine); !slices.Equal(got, before) {
				t.Errorf("a failed pack into an existing folder left %v, want %v", got, before)
			}
			old, err := OpenShards(filepath.Join(mine, ManifestName), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			if err := old.Verify(nil); err != nil {
				t.Errorf("the dataset packed before the failed pack: %v", err)
			}
		})
	}
}

// Inputs that hold no text are the error `herd train` gives for them, before any folder
// is made: a dataset of no rows is of no use, and `herd data verify` rejects it.
func TestPackOfEmptyInputsFails(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.txt", "b.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "empty.jsonl"), []byte("{\"text\": \"\"}\n\n{\"text\": \"\"}\n"), 0o644)
	pattern := filepath.Join(dir, "*.txt")
	_, trainErr := ReadCorpus(pattern)
	out := filepath.Join(dir, "out")
	for _, tc := range []struct {
		read func(emit func(*RawDoc) error) error
		want string
	}{
		{TextFiles(pattern, nil), trainErr.Error()},
		{JSONLFiles(filepath.Join(dir, "empty.jsonl"), "text", nil), filepath.Join(dir, "empty.jsonl") + ": selects no non-empty document"},
	} {
		_, err := Pack(tc.read, PackOptions{Out: out, SeqLen: 8})
		if !usererr.Is(err) || err.Error() != tc.want {
			t.Errorf("error %v, want the user error %q", err, tc.want)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed pack left its output folder (%v)", err)
		}
	}
}
