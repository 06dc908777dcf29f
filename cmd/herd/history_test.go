package main

import (
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/herdml/herd/trainer/history"
)

// `herd metrics` prints the history `herd train` wrote, found by the run's folder, one of
// its checkpoints, or its name: as CSV (null as an empty cell, expert load spread over
// columns), as JSON Lines (null as null), and as a table with the evaluations; every
// number as the file holds it.
func TestMetricsPrintsTheHistory(t *testing.T) {
	dir := tinyRun(t)
	if _, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "runs", "--set", "train.steps=4", "--set", "train.eval.every=2"); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	rows, err := history.Read(filepath.Join(dir, "runs", "e2e", history.FileName))
	if err != nil || len(rows) != 4 {
		t.Fatalf("history after 4 steps: %d rows, %v", len(rows), err)
	}

	stdout, stderr, status := herd(t, dir, "metrics", "e2e", "--out", "runs", "--csv")
	if status != 0 {
		t.Fatalf("herd metrics --csv: status %d\n%s", status, stderr)
	}
	recs, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if err != nil {
		t.Fatalf("not CSV: %v\n%s", err, stdout)
	}
	header := []string{"step", "tokens", "time", "loss", "aux_loss", "lr", "grad_norm", "tokens_per_s", "step_seconds", "eval_loss", "eval_bpb",
		"expert_load.0.0", "expert_load.0.1", "fp8_amax_max", "fp8_scale_min", "fp8_scale_max"}
	if len(recs) != 5 || !reflect.DeepEqual(recs[0], header) {
		t.Fatalf("CSV: %d records, header %q; want 5, %q", len(recs), recs[0], header)
	}
	for i, r := range rows {
		rec := recs[i+1]
		cell := func(c int, want float64) {
			t.Helper()
			if math.IsNaN(want) {
				if rec[c] != "" {
					t.Errorf("step %d, %s: %q, want an empty cell", r.Step, header[c], rec[c])
				}
				return
			}
			if got, err := strconv.ParseFloat(rec[c], 64); err != nil || got != want {
				t.Errorf("step %d, %s: %q, want %v", r.Step, header[c], rec[c], want)
			}
		}
		if rec[0] != strconv.FormatInt(r.Step, 10) || rec[1] != strconv.FormatInt(r.Tokens, 10) {
			t.Errorf("step %d: step, tokens %q %q", r.Step, rec[0], rec[1])
		}
		for c, v := range []float64{r.Loss, r.Aux, r.LR, r.GradNorm, r.TokensPerS, r.StepSeconds, r.EvalLoss, r.EvalBPB,
			r.ExpertLoad[0][0], r.ExpertLoad[0][1], r.FP8AmaxMax, r.FP8ScaleMin, r.FP8ScaleMax} {
			cell(3+c, v)
		}
		if math.IsNaN(r.EvalLoss) != (r.Step%2 == 1) {
			t.Errorf("step %d: eval loss %v with train.eval.every 2", r.Step, r.EvalLoss)
		}
	}

	stdout, stderr, status = herd(t, dir, "metrics", filepath.Join("runs", "e2e"), "--json")
	if status != 0 {
		t.Fatalf("herd metrics --json: status %d\n%s", status, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("JSON Lines: %d lines, want 4\n%s", len(lines), stdout)
	}
	for i, line := range lines {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("line %d is not a JSON object: %v\n%s", i, err, line)
		}
		r := rows[i]
		if obj["step"] != float64(r.Step) || obj["loss"] != r.Loss || obj["fp8_amax_max"] != nil || !reflect.DeepEqual(obj["expert_load"], []any{[]any{r.ExpertLoad[0][0], r.ExpertLoad[0][1]}}) {
			t.Errorf("line %d: %s; want %+v", i, line, r)
		}
		if v, ok := obj["eval_loss"]; !ok || (v == nil) != math.IsNaN(r.EvalLoss) || v != nil && v != r.EvalLoss {
			t.Errorf("line %d: eval_loss %v, want %v (null when none ran)", i, v, r.EvalLoss)
		}
	}

	// By a checkpoint's folder, and by the run's name under train.checkpoint.dir's default.
	for _, run := range []string{filepath.Join("runs", "e2e", "step-00000004"), "e2e"} {
		stdout, stderr, status = herd(t, dir, "metrics", run, "--last", "2")
		if status != 0 {
			t.Fatalf("herd metrics %s: status %d\n%s", run, status, stderr)
		}
		for _, want := range []string{"4 steps, 512 tokens", "EVAL LOSS", "\n     4  ", "evaluations:", strconv.FormatFloat(rows[1].EvalLoss, 'f', 4, 64)} {
			if !strings.Contains(stdout, want) {
				t.Errorf("herd metrics %s lacks %q:\n%s", run, want, stdout)
			}
		}
		if strings.Contains(stdout, "\n     2  128") {
			t.Errorf("--last 2 shows step 2's row:\n%s", stdout)
		}
	}
}

// What herd metrics cannot print is a user error naming it, on one line.
func TestMetricsUserErrors(t *testing.T) {
	dir := tinyRun(t)
	for _, d := range []string{"empty", "bad"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bad", history.FileName), []byte("step,loss\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"nope/e2e"}, []string{"nope/e2e", "no such folder"}},
		{[]string{"empty"}, []string{filepath.Join("empty", history.FileName), "no metrics history"}},
		{[]string{"bad"}, []string{filepath.Join("bad", history.FileName), "unreadable metrics history"}},
		{[]string{"run.yaml"}, []string{"run.yaml", "unreadable metrics history"}},
		{[]string{"empty", "--csv", "--json"}, []string{"--csv", "not both"}},
		{[]string{"empty", "--last", "0"}, []string{"--last"}},
		{[]string{"../e2e", "--out", "runs"}, []string{"../e2e", "run's name"}},
		{[]string{"e2e", "--out", "runs"}, []string{"runs", "no such folder"}},
	} {
		stdout, stderr, status := herd(t, dir, append([]string{"metrics"}, c.args...)...)
		wantUserError(t, stdout, stderr, status, c.want...)
	}
}
