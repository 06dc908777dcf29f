package main

import (
	"encoding/csv"
	"encoding/json"
	"math"
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

func TestMetapCoordCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run.yaml")
	src := `model: {vocab_size: 64, d_model: 32, n_layers: 2, n_heads: 2, n_kv_heads: 1, ffn_hidden: 96, seq_len: 16,
        moe: {experts: 2, top_k: 1, shared_expert: true, every: 2, expert_hidden: 64}}
data: {synthetic: true}
metap: {mode: sp}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	pngPath := filepath.Join(dir, "coord.png")
	args := []string{"metap", "coord-check", path, "--widths", "32,64", "--steps", "2", "--seeds", "1", "--batch", "1", "--seq-len", "8", "--png", pngPath}

	// sp grows with width: the gate fails, as an internal error (not the user's config).
	out, err := herdOut(t, args...)
	if err == nil || usererr.Is(err) || !strings.Contains(err.Error(), "coord check failed under sp") {
		t.Fatalf("sp: want the gate to fail, got %v", err)
	}
	if !strings.Contains(out, "residual (block 1)") || !strings.Contains(out, "logits") {
		t.Fatalf("no slope table:\n%s", out)
	}
	if st, err := os.Stat(pngPath); err != nil || st.Size() == 0 {
		t.Fatalf("no PNG written: %v", err)
	}

	// Report only, as JSON: μP's init-time logits shrink as 1/√m (slope -1/2 at step 0).
	out, err = herdOut(t, append(args, "--set", "metap.mode=metap", "--max-slope", "0", "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Mode   string `json:"mode"`
		Series []struct {
			Kind   string     `json:"kind"`
			Slopes []*float64 `json:"slopes"`
		} `json:"series"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	logits := res.Series[len(res.Series)-1]
	if res.Mode != "metap" || logits.Kind != "logits" || len(logits.Slopes) != 3 || logits.Slopes[0] == nil || logits.Slopes[2] == nil ||
		math.Abs(*logits.Slopes[0]+0.5) > 0.1 {
		t.Fatalf("json %+v", res)
	}

	if _, err := herdOut(t, "metap", "coord-check", path, "--widths", "32"); !usererr.Is(err) {
		t.Fatalf("one width: want a user error, got %v", err)
	}
}
