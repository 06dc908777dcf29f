package main

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
)

// herdOut runs the herd command line with args and returns its standard output.
func herdOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out strings.Builder
	root.SetOut(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestMetapTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.yaml")
	src := "model: {preset: tiny}\ndata: {synthetic: true}\nmetap: {mode: metap, base: {d_model: 64, n_layers: 2}}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	sets := []string{"--set", "train.optim.lr=0.01"}
	run, err := config.Load(path, sets[1:])
	if err != nil {
		t.Fatal(err)
	}
	want, err := run.MetaPTable()
	if err != nil {
		t.Fatal(err)
	}

	out, err := herdOut(t, append([]string{"metap", "table", path, "--format", "csv"}, sets...)...)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(want.Entries) || rows[1][0] != want.Entries[0].Name || rows[len(rows)-1][0] != "output.weight" {
		t.Fatalf("csv has %d rows, want a header and %d tensors:\n%s", len(rows), len(want.Entries), out)
	}

	out, err = herdOut(t, append([]string{"metap", "table", path, "--json"}, sets...)...)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Mode    string `json:"mode"`
		Hash    string `json:"hash"`
		Entries []struct {
			Name string  `json:"name"`
			LR   float64 `json:"lr"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if got.Mode != "metap" || got.Hash != want.Hash() || len(got.Entries) != len(want.Entries) || got.Entries[2].LR != want.Entries[2].LR {
		t.Fatalf("json %+v does not match the table (hash %s)", got, want.Hash())
	}

	if _, err := herdOut(t, "metap", "table", path, "--format", "xml"); !usererr.Is(err) {
		t.Fatalf("--format xml: want a user error, got %v", err)
	}
	if _, err := herdOut(t, "metap", "table", path, "--set", "metap.depth_alpha=2"); !usererr.Is(err) {
		t.Fatalf("depth_alpha 2: want a user error, got %v", err)
	}
}
