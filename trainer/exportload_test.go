package trainer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/generate"
)

// TestLoadExport: an export loads back as the model that was exported (weights,
// multipliers that MetaP set away from 1, attention scale), generates what the trainer's
// model does, and a damaged export is a user error naming its file and tensor.
func TestLoadExport(t *testing.T) {
	tr, _ := trainedCheckpoint(t)
	dir := t.TempDir()
	if err := tr.Export(dir); err != nil {
		t.Fatal(err)
	}
	m, err := LoadExport(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Params.Host(), tr.Model.Params.Host()) || !slices.Equal(m.Mult, tr.Model.Mult) || m.AttnScale != tr.Model.AttnScale {
		t.Fatalf("the loaded export differs from the exported model")
	}
	o := generate.Options{MaxTokens: 12, TopP: 1}
	prompt := []int32{'f', 'u', 'n', 'c'}
	want, _ := tr.Generate(prompt, o, nil)
	if got, _ := generate.Run(m.NewDecoder(), prompt, o, nil); !slices.Equal(got, want) {
		t.Errorf("the export generated %v, the trainer %v", got, want)
	}

	cfgPath := filepath.Join(dir, ExportConfigFile)
	js, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	damage := func(what string, edit func(map[string]any), wantWhere string, want ...string) {
		t.Helper()
		var ec map[string]any
		if err := json.Unmarshal(js, &ec); err != nil {
			t.Fatal(err)
		}
		edit(ec)
		b, _ := json.Marshal(ec)
		if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadExport(dir)
		var ue *usererr.Error
		if !errors.As(err, &ue) || ue.Where != wantWhere {
			t.Errorf("%s: %v, want a user error at %s", what, err, wantWhere)
			return
		}
		for _, w := range want {
			if !strings.Contains(ue.What, w) {
				t.Errorf("%s: %q does not say %q", what, ue.What, w)
			}
		}
	}
	damage("another format", func(ec map[string]any) { ec["format"] = "herd-export/0" }, cfgPath, "herd-export/0", ExportFormat)
	damage("a multiplier missing", func(ec map[string]any) { delete(ec["mult"].(map[string]any), "output.weight") }, cfgPath, "output.weight")
	damage("a wider model", func(ec map[string]any) { ec["ffn_hidden"] = 96.0 }, filepath.Join(dir, checkpoint.ModelFile), "layers.0.ffn.w", "shape") // w1, w2 or w3: the first read
}
