package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/s3test"
	"github.com/herdml/herd/internal/stephook"
	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/trainer"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/history"
	"github.com/herdml/herd/workflows"
)

// packTiny packs tinyRun's text into shard sets dir/shards/{train,eval} and uploads each
// to the test bucket under data/{train,eval}.
func packTiny(t *testing.T, dir string) {
	t.Helper()
	seq := 32
	if os.Getenv("HERD_TEST_SMALL") != "" {
		seq = 8
	}
	for _, set := range []string{"train", "eval"} {
		out := filepath.Join(dir, "shards", set)
		if _, err := data.Pack(data.TextFiles(filepath.Join(dir, set, "*.txt"), nil), data.PackOptions{Out: out, SeqLen: seq, ShardRows: 64, BatchRows: 16}); err != nil {
			t.Fatal(err)
		}
		s3test.Upload(t, out, "data/"+set)
	}
}

// storedHistory reads the metrics history beside the checkpoints at url, a bucket prefix.
func storedHistory(t *testing.T, url string) []history.Row {
	t.Helper()
	rows, err := history.ReadAt(storage.Join(url, history.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// storedWeights is weights for a checkpoint in a bucket.
func storedWeights(t *testing.T, url string) string {
	t.Helper()
	s, name, err := checkpoint.At(url)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimFile} {
		r, err := s.Open(name, f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Must-show 1 of issue 20: `herd run` with its shards and checkpoints in a bucket
// (checkpoints written in the background), killed with SIGKILL after its step-4
// checkpoint and step 5, its working folder, shard cache and live metrics history
// deleted; `herd resume` in an empty folder finishes the run from the bucket with the
// final weights of an uninterrupted `herd train` on the local copy of the shards.
// Must-show 2 of issue 21: its metrics history, in the bucket, equals that of the
// uninterrupted run row for row (one segment, so that it evaluates where herd train
// does), and `herd metrics` finds it by the run's name.
func TestRunInABucketSurvivesKill9(t *testing.T) {
	s3test.Start(t)
	dir := tinyRun(t)
	packTiny(t, dir)
	home, cache, holds := t.TempDir(), t.TempDir(), t.TempDir()
	t.Setenv("HERD_HOME", home)
	t.Setenv(data.CacheEnv, cache)
	t.Setenv(stephook.HoldsEnv, holds)
	t.Setenv(trainer.HistoryCacheEnv, filepath.Join(cache, "history"))
	steps := []string{"--set", "train.steps=6", "--set", "train.checkpoint.every=2"}

	local := append([]string{"train", "run.yaml", "--out", "ref", "--set", "data.train=shards/train", "--set", "data.eval=shards/eval"}, steps...)
	if _, stderr, status := herd(t, dir, local...); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	want := weights(t, filepath.Join(dir, "ref", "e2e", checkpoint.Name(6)))
	wantHistory, err := history.Read(filepath.Join(dir, "ref", "e2e", history.FileName))
	if err != nil {
		t.Fatal(err)
	}

	release, err := stephook.Hold(holds, "e2e", 5)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	runs := s3test.URL("runs")
	cmd := herdCmd(t, dir, nil, append([]string{"run", "run.yaml", "--heartbeat-timeout", "3s", "--segment-steps", "6",
		"--set", "data.train=" + s3test.URL("data/train"), "--set", "data.eval=" + s3test.URL("data/eval"),
		"--set", "train.checkpoint.dir=" + runs, "--set", "train.checkpoint.async=1"}, steps...)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	store, err := checkpoint.OpenRoot(runs + "/e2e")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		name, _, _ := checkpoint.Latest(store)
		if stephook.Held(holds, "e2e", 5) && name == checkpoint.Name(4) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("herd run did not commit step 4 to the bucket and train step 5 (newest %q):\n%s", name, out.String())
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	release()
	for _, d := range []string{dir, cache} {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}

	// A resume that started afresh instead of from step 4 would reach this hold.
	afresh, err := stephook.Hold(holds, "e2e", 0)
	if err != nil {
		t.Fatal(err)
	}
	done, fromScratch := make(chan struct{}), make(chan bool, 1)
	go func() {
		for {
			select {
			case <-done:
				fromScratch <- false
				return
			case <-time.After(50 * time.Millisecond):
				if stephook.Held(holds, "e2e", 0) {
					afresh()
					fromScratch <- true
					return
				}
			}
		}
	}()
	stdout, stderr, status := herd(t, t.TempDir(), "resume", "e2e", "--json")
	close(done)
	afresh()
	if <-fromScratch {
		t.Errorf("herd resume trained from step 0, not from the bucket's step-4 checkpoint")
	}
	if status != 0 {
		t.Fatalf("herd resume: status %d\n%s\nthe killed run said:\n%s", status, stderr, out.String())
	}
	var p workflows.Progress
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatalf("stdout is not the run's JSON progress: %v\n%s", err, stdout)
	}
	if p.State != workflows.StateCompleted || p.Step != 6 || p.Dir != runs+"/e2e" {
		t.Fatalf("the resumed run ended %+v", p)
	}
	if got := storedWeights(t, runs+"/e2e/"+p.Checkpoint); got != want {
		t.Errorf("killed, resumed from the bucket: weights %s; uninterrupted on local shards: %s", got, want)
	}
	if d := history.Diff(storedHistory(t, runs+"/e2e"), wantHistory); d != "" {
		t.Errorf("killed, resumed from the bucket: metrics history against the uninterrupted run's: %s", d)
	}
	if stdout, stderr, status := herd(t, t.TempDir(), "metrics", "e2e", "--csv"); status != 0 || strings.Count(stdout, "\n") != 7 {
		t.Errorf("herd metrics of the run by its name: status %d\n%s%s", status, stdout, stderr)
	}

	// The run's bucket serves eval, export and init.from as its folder would.
	other := tinyRun(t)
	if stdout, stderr, status := herd(t, other, "eval", runs+"/e2e", "--data", s3test.URL("data/eval"), "--batches", "2"); status != 0 || !strings.Contains(stdout, "in 2 batches") {
		t.Errorf("herd eval of the bucket's run: status %d\n%s%s", status, stdout, stderr)
	}
	exported := s3test.URL("exports/e2e")
	if _, stderr, status := herd(t, other, "export", runs+"/e2e/"+checkpoint.Name(6), exported); status != 0 {
		t.Errorf("herd export to a bucket: status %d\n%s", status, stderr)
	}
	b, err := storage.Open(exported)
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := b.List(""); err != nil || !slices.Contains(keys, "config.json") || !slices.Contains(keys, checkpoint.ModelFile) {
		t.Errorf("the export in the bucket holds %v (%v)", keys, err)
	}
	if _, stderr, status := herd(t, other, "train", "run.yaml", "--out", "ft", "--set", "init.from="+runs+"/e2e", "--set", "train.steps=1"); status != 0 {
		t.Errorf("herd train with init.from a bucket's run: status %d\n%s", status, stderr)
	}
}

// A bucket herd cannot write to is a user error naming it before any step is trained.
func TestTrainToMissingBucket(t *testing.T) {
	s3test.Start(t)
	dir := tinyRun(t)
	stdout, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "s3://no-such-bucket/runs")
	wantUserError(t, stdout, stderr, status, "s3://no-such-bucket/runs/e2e", "cannot write checkpoints")
}

// `herd sweep --out s3://...` uploads the sweep's results to the bucket and names them by
// their URLs.
func TestSweepResultsToBucket(t *testing.T) {
	s3test.Start(t)
	dir := tinyRun(t)
	t.Setenv("HERD_HOME", filepath.Join(dir, "home"))
	const sweep = "name: s\nbase: run.yaml\nset: [train.steps=2]\nspace: {train.optim.lr: {values: [1.0e-3, 1.0e-2]}}\nmetric: eval_loss\n"
	if err := os.WriteFile(filepath.Join(dir, "s.yaml"), []byte(sweep), 0o644); err != nil {
		t.Fatal(err)
	}
	out := s3test.URL("sweeps/s")
	stdout, stderr, status := herd(t, dir, "sweep", "s.yaml", "--json", "--out", out)
	var res struct {
		Files []string `json:"files"`
	}
	if status != 0 || json.Unmarshal([]byte(stdout), &res) != nil {
		t.Fatalf("herd sweep: status %d\n%s%s", status, stdout, stderr)
	}
	b, err := storage.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := b.List("")
	if err != nil || len(res.Files) == 0 {
		t.Fatalf("listing %s: %v; herd named %v", out, err, res.Files)
	}
	for _, f := range res.Files {
		if !strings.HasPrefix(f, out+"/") || !slices.Contains(keys, strings.TrimPrefix(f, out+"/")) {
			t.Errorf("herd named %s, but the bucket holds %v", f, keys)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "s3:")); err == nil {
		t.Errorf("herd sweep made a local folder s3:")
	}
}
