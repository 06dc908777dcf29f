package trainer

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/s3test"
	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/history"
)

// storedFingerprint is fingerprint for a checkpoint in any storage.
func storedFingerprint(t *testing.T, root, name string) map[string]string {
	t.Helper()
	s, err := checkpoint.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	var m checkpoint.Manifest
	var st checkpoint.State
	for f, v := range map[string]any{checkpoint.ManifestFile: &m, checkpoint.StateFile: &st} {
		r, err := s.Open(name, f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]string{}
	for _, f := range m.Files {
		out[f.Name] = f.SHA256
	}
	st.Config = nil
	b, _ := json.Marshal(st)
	out[checkpoint.StateFile] = string(b)
	return out
}

// Checkpoints written in the background to a bucket, with the run stopped and resumed from
// the bucket, end in the checkpoint an uninterrupted run writes in a local folder, bit
// for bit; the metrics history uploaded beside them equals the folder's.
func TestBucketAsyncExactResume(t *testing.T) {
	s3test.Start(t)
	t.Setenv(HistoryCacheEnv, t.TempDir())
	testAsyncExactResume(t, s3test.URL("runs"))
}

// Background checkpoints work in a folder too.
func TestFolderAsyncExactResume(t *testing.T) {
	testAsyncExactResume(t, t.TempDir())
}

func testAsyncExactResume(t *testing.T, dir string) {
	const k, n = 3, 6
	// No eval data: Run evaluates at the step it is asked to stop at, so the history of a
	// run stopped at step k would hold an evaluation that of an uninterrupted run lacks.
	local := newTrainer(t, microConfig(t, "train.checkpoint.every=1", `data.eval=""`), Options{})
	want, err := local.Run(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	wantPrint := storedFingerprint(t, local.CheckpointDir(), want.Checkpoint)
	local.Close()
	wantHistory := storedHistory(t, local.CheckpointDir())

	bucket := microConfig(t, "train.checkpoint.every=1", "train.checkpoint.async=2", "train.checkpoint.keep=2",
		"train.checkpoint.dir="+dir, `data.eval=""`)
	var got Stats
	for i, until := range []int64{k, n} {
		tr := newTrainer(t, bucket, Options{})
		if i > 0 {
			if name, err := tr.Resume(""); err != nil || name != checkpoint.Name(k) {
				t.Fatalf("resume from the bucket: %q, %v; want %s", name, err, checkpoint.Name(k))
			}
		}
		if got, err = tr.Run(context.Background(), until); err != nil {
			t.Fatal(err)
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got.Checkpoint != checkpoint.Name(n) {
		t.Fatalf("the last step's checkpoint is %q, want %s", got.Checkpoint, checkpoint.Name(n))
	}
	run := storage.Join(dir, "micro")
	gotPrint := storedFingerprint(t, run, got.Checkpoint)
	for f, w := range wantPrint {
		if gotPrint[f] != w {
			t.Errorf("%s: written in the background to %s and resumed %s, uninterrupted %s", f, dir, gotPrint[f], w)
		}
	}
	if d := history.Diff(storedHistory(t, run), wantHistory); d != "" {
		t.Errorf("history in %s: %s", run, d)
	}
	s, _ := checkpoint.OpenRoot(run)
	if names, err := s.List(); err != nil || len(names) != 2 {
		t.Errorf("with keep 2 %s holds %v (%v)", run, names, err)
	}
}

// An upload that fails in the background fails the run, naming the checkpoint.
func TestBucketUploadErrorFailsTheRun(t *testing.T) {
	srv := s3test.Start(t)
	t.Setenv(HistoryCacheEnv, t.TempDir())
	tr := newTrainer(t, microConfig(t, "train.checkpoint.every=1", "train.checkpoint.async=1",
		"train.checkpoint.dir="+s3test.URL("runs")), Options{})
	defer tr.Close()
	srv.Stop()
	_, err := tr.Run(context.Background(), 3)
	if err == nil || !strings.Contains(err.Error(), "writing checkpoint step-0000000") {
		t.Fatalf("Run with the store gone: %v; want the background write's error", err)
	}
}
