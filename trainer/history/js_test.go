package history

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/herdml/herd/internal/npmtest"
)

// arrowJS is the Arrow project's own JavaScript implementation, pinned.
const arrowJS = "apache-arrow@21.2.0"

// readJS prints, as JSON, the column names and every row of the Arrow IPC stream at
// process.argv[3], read with apache-arrow installed under process.argv[2]: integers
// and timestamps (BigInt or Date there) as numbers of milliseconds, lists as arrays.
const readJS = `
const path = require('path'), fs = require('fs');
const arrow = require(path.join(process.argv[2], 'node_modules', 'apache-arrow'));
const table = arrow.tableFromIPC(fs.readFileSync(process.argv[3]));
const names = table.schema.fields.map(f => f.name);
const rows = [];
for (const r of table) {
	const o = {};
	for (const n of names) {
		let v = r[n];
		if (v === null) {
		} else if (n === 'expert_load') {
			v = Array.from(v, layer => Array.from(layer));
		} else if (v instanceof Date) {
			v = v.getTime();
		} else {
			v = Number(v);
		}
		o[n] = v;
	}
	rows.push(o);
}
process.stdout.write(JSON.stringify({names, rows}));
`

// An independent reader, the Arrow project's JavaScript implementation, reads the file
// (ended, and as a reader sees it while the run appends) and gets every value Read does,
// with null where a value does not apply.
func TestArrowJSReadsTheHistory(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not found: the independent reader is the Arrow project's JavaScript implementation (.ci/run installs nodejs and npm)")
	}
	prefix := npmtest.Prefix(t, "npm-arrow", "the independent reader is the npm package apache-arrow", arrowJS)
	dir := t.TempDir()
	w, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := rowsOf(1, 6)
	for i := range want {
		want[i].Loss = math.Pi / float64(want[i].Step) // digits that only an exact reader gets back
	}
	appendAll(t, w, want)
	path := filepath.Join(dir, FileName)
	live := filepath.Join(dir, "live.arrows")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(live, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "read.js")
	if err := os.WriteFile(script, []byte(readJS), 0o644); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range Schema.Fields() {
		names = append(names, f.Name)
	}
	for _, file := range []string{path, live} {
		out, err := exec.Command("node", script, prefix, file).Output()
		if err != nil {
			t.Fatalf("node reading %s: %v\n%s", file, err, exitStderr(err))
		}
		var got struct {
			Names []string
			Rows  []map[string]any
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !reflect.DeepEqual(got.Names, names) || len(got.Rows) != len(want) {
			t.Fatalf("%s: columns %v and %d rows; want %v and %d", file, got.Names, len(got.Rows), names, len(want))
		}
		for i, r := range want {
			if g, w := got.Rows[i], jsRow(r); !reflect.DeepEqual(g, w) {
				t.Errorf("%s, row %d:\n apache-arrow %v\n herd         %v", filepath.Base(file), i, g, w)
			}
		}
	}
}

// jsRow is r as readJS prints it, decoded by encoding/json.
func jsRow(r Row) map[string]any {
	opt := func(v float64) any {
		if math.IsNaN(v) {
			return nil
		}
		return v
	}
	var load any
	if r.ExpertLoad != nil {
		var layers []any
		for _, l := range r.ExpertLoad {
			var vs []any
			for _, v := range l {
				vs = append(vs, v)
			}
			layers = append(layers, vs)
		}
		load = layers
	}
	return map[string]any{
		"step": float64(r.Step), "tokens": float64(r.Tokens), "time": float64(r.Time.UnixMilli()),
		"loss": r.Loss, "aux_loss": r.Aux, "lr": r.LR, "grad_norm": r.GradNorm,
		"tokens_per_s": r.TokensPerS, "step_seconds": r.StepSeconds,
		"eval_loss": opt(r.EvalLoss), "eval_bpb": opt(r.EvalBPB), "expert_load": load,
		"fp8_amax_max": opt(r.FP8AmaxMax), "fp8_scale_min": opt(r.FP8ScaleMin), "fp8_scale_max": opt(r.FP8ScaleMax),
	}
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
