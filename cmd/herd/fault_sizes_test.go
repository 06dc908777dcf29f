package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/sysmem"
	"github.com/herdml/herd/trainer/checkpoint"
)

// TestPlanAbsurdSizes: `herd plan` refuses sizes whose counts would wrap, naming the key,
// and prints large but valid ones as positive numbers.
func TestPlanAbsurdSizes(t *testing.T) {
	dir := tinyRun(t)
	for set, key := range map[string]string{"model.d_model=1000000000": "model.d_model", "model.vocab_size=1099511627776": "model.vocab_size"} {
		stdout, stderr, status := herd(t, dir, "plan", "run.yaml", "--set", set)
		wantUserError(t, stdout, stderr, status, key)
	}
	stdout, stderr, status := herd(t, dir, "plan", "run.yaml", "--json", "--set", "model.vocab_size=2147483647", "--set", "model.seq_len=100000000")
	if status != 0 {
		t.Fatalf("status %d\n%s", status, stderr)
	}
	var p struct {
		Params int64 `json:"params"`
		Memory struct {
			Total int64 `json:"total"`
		} `json:"memory_per_rank"`
	}
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatal(err)
	}
	if p.Params < 2*2147483647*32 || p.Memory.Total < 16*p.Params {
		t.Errorf("plan of a large model: %+v, want positive counts of at least its embeddings", p)
	}
}

// TestTrainTooBigForMemory: `herd train` and the embedded `herd run` refuse a run that
// cannot fit in what the process may use (here GOMEMLIMIT, 6 GiB) before allocating any
// of it: exit 2, one line with the estimate and the limit, no trace.
func TestTrainTooBigForMemory(t *testing.T) {
	const limit = 6 << 30
	t.Setenv("GOMEMLIMIT", "6GiB")
	t.Setenv("HERD_TEMPORAL", "")
	source := "6 GiB this process may use (limit set by GOMEMLIMIT)"
	if here := sysmem.Lookup(); here.Bytes > 0 && here.Bytes < limit {
		source = here.Source // a machine smaller than the limit
	}
	dir := tinyRun(t)
	state := filepath.Join(dir, "state")
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"train", "run.yaml", "--set", "model.d_model=1000000000"}, []string{"model.d_model", "more than herd can plan for"}},
		{[]string{"train", "run.yaml", "--set", "model.vocab_size=1099511627776"}, []string{"model.vocab_size", "at most 2147483647"}},
		{[]string{"train", "run.yaml", "--set", "model.d_model=65536"}, []string{"iB of memory per rank (", source}},
		{[]string{"train", "run.yaml", "--set", "model.seq_len=100000000"}, []string{"iB of memory per rank (", source}},
		{[]string{"run", "run.yaml", "--state-dir", state, "--set", "model.d_model=1000000000"}, []string{"model.d_model"}},
		{[]string{"run", "run.yaml", "--state-dir", state, "--set", "model.d_model=65536"}, []string{"iB of memory per rank (", source}},
	} {
		stdout, stderr, status := herd(t, dir, c.args...)
		wantUserError(t, stdout, stderr, status, c.want...)
	}
}

// TestRunFailedExits: `herd run` following a run whose segment exhausts its retries (here
// another owner holds the run folder: every attempt fails with a retryable error, five
// with backoff, about 15 s) stops following and exits 1 with one line: the run, the reason and
// the command that resumes it, --state-dir included.
func TestRunFailedExits(t *testing.T) {
	t.Setenv("HERD_TEMPORAL", "")
	dir := tinyRun(t)
	// Another owner holds the run folder: every attempt fails with a retryable error.
	lock, err := checkpoint.LockDir(filepath.Join(dir, "out", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	state := filepath.Join(dir, "state")
	stdout, stderr, status := herd(t, dir, "run", "run.yaml", "--state-dir", state)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if status != 1 || stdout != "" {
		t.Fatalf("status %d, stdout %q, want 1 and nothing\nstderr: %s", status, stdout, stderr)
	}
	for _, want := range []string{"herd: run e2e failed: segment to step 2 failed after 5 attempts", "run folder in use", "`herd resume e2e --state-dir " + state + "`"} {
		if !strings.Contains(last, want) {
			t.Errorf("last line %q lacks %q", last, want)
		}
	}
}
