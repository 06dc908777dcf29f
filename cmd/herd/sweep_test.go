package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/results"
)

// `herd sweep` as users run it. Must show 6 through the command: each bad file ends it
// with status 2, naming the file and the key, before anything starts (no embedded
// server's state appears). Then a two-trial ASHA sweep runs to its end and writes its
// results beside each other, and `herd sweep status --json` reads the same sweep back.
func TestSweepCommand(t *testing.T) {
	dir := tinyRun(t)
	home := filepath.Join(dir, "home")
	t.Setenv("HERD_HOME", home)
	for _, c := range []struct{ name, src, key string }{
		{"unknown key in the space", "space: {train.optim.lrr: {values: [1]}}", "space.train.optim.lrr"},
		{"empty range", "space: {train.optim.lr: {uniform: [0.1, 0.01], points: 2}}", "space.train.optim.lr.uniform"},
		{"log_uniform from zero", "space: {train.optim.lr: {log_uniform: [0, 0.1], points: 2}}", "space.train.optim.lr.log_uniform"},
		{"more concurrency than trials", "max_concurrent: 3\nspace: {train.optim.lr: {values: [1.0e-3, 1.0e-2]}}", "max_concurrent"},
	} {
		if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("base: run.yaml\n"+c.src+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, status := herd(t, dir, "sweep", "bad.yaml")
		if status != 2 || !strings.Contains(stderr, "bad.yaml: "+c.key) {
			t.Errorf("%s: status %d, want 2 naming bad.yaml: %s\n%s", c.name, status, c.key, stderr)
		}
		if _, err := os.Stat(home); err == nil {
			t.Fatalf("%s: %s exists: something started before the file was refused", c.name, home)
		}
	}

	const good = "name: s\nbase: run.yaml\nset: [train.steps=4]\nspace: {train.optim.lr: {values: [1.0e-3, 1.0e-2]}}\n" +
		"metric: eval_loss\nasha: {rungs: [2], reduction_factor: 2}\n"
	if err := os.WriteFile(filepath.Join(dir, "s.yaml"), []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status := herd(t, dir, "sweep", "s.yaml", "--json", "--out", "res")
	var out struct {
		Sweep     workflows.SweepProgress `json:"sweep"`
		Files     []string                `json:"files"`
		OptimalLR []results.OptimalLR     `json:"optimal_lr"`
	}
	if status != 0 || json.Unmarshal([]byte(stdout), &out) != nil {
		t.Fatalf("herd sweep: status %d\n%s%s", status, stdout, stderr)
	}
	if p := out.Sweep; p.State != workflows.StateCompleted || p.Best < 0 || len(p.Trials) != 2 {
		t.Fatalf("sweep ended %+v", p)
	}
	best := out.Sweep.Trials[out.Sweep.Best]
	lr, _ := strconv.ParseFloat(strings.TrimPrefix(best.Params[0], "train.optim.lr="), 64)
	if len(out.OptimalLR) != 1 || out.OptimalLR[0].Metric != best.Final || out.OptimalLR[0].LR != lr {
		t.Fatalf("optimal LR %+v, want the best trial's %v %g", out.OptimalLR, best.Params, best.Final)
	}
	var names []string
	for _, f := range out.Files {
		names = append(names, filepath.Base(f))
	}
	if want := []string{"trials.csv", "trials.parquet", "metric.png", "lr.png", "optimal_lr.csv"}; !slices.Equal(names, want) {
		t.Fatalf("results %v, want %v", out.Files, want)
	}
	pq, err := os.ReadFile(filepath.Join(dir, "res", "trials.parquet"))
	if err != nil || !bytes.HasPrefix(pq, []byte("PAR1")) || !bytes.HasSuffix(pq, []byte("PAR1")) {
		t.Fatalf("trials.parquet: %v, %d bytes, not framed as Parquet", err, len(pq))
	}
	stdout, stderr, status = herd(t, dir, "sweep", "status", "s", "--json")
	var st workflows.SweepProgress
	if status != 0 || json.Unmarshal([]byte(stdout), &st) != nil || st.Best != out.Sweep.Best || st.Compute != out.Sweep.Compute {
		t.Fatalf("herd sweep status: status %d, %+v, want best %d compute %d\n%s", status, st, out.Sweep.Best, out.Sweep.Compute, stderr)
	}
}
