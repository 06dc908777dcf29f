package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// llama4Fixture copies trainer/hf/testdata/llama4-f32 (a Llama4ForCausalLM with experts,
// NoPE, qk norm, temperature tuning, chunked attention and rope_scaling) into a folder
// of the test's.
func llama4Fixture(t *testing.T) string {
	t.Helper()
	src := filepath.Join("..", "..", "trainer", "hf", "testdata", "llama4-f32")
	dir := filepath.Join(t.TempDir(), "llama4")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestFineTuneFromLlama4AndExport: herd trains from a Llama 4 folder and
// `herd export --format hf` writes a Llama4ForCausalLM with the source's tensors, byte for
// byte, and its config.
func TestFineTuneFromLlama4AndExport(t *testing.T) {
	src := llama4Fixture(t)
	dir := trainAndExportHF(t, src)
	var wantCfg, gotCfg map[string]any
	for path, c := range map[string]*map[string]any{filepath.Join(src, "config.json"): &wantCfg, filepath.Join(dir, "exported", "config.json"): &gotCfg} {
		js, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(js, c); err != nil {
			t.Fatal(err)
		}
	}
	for key, w := range wantCfg {
		if key == "max_position_embeddings" { // the run's seq_len
			continue
		}
		if g, _ := json.Marshal(gotCfg[key]); string(g) != mustJSON(t, w) {
			t.Errorf("exported config.json: %s is %s, the source's %s", key, g, mustJSON(t, w))
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLlama4FolderUserErrors: an unsupported architecture and a shard the index lists but
// the folder lacks are one-line errors naming the file, exit 2, and nothing is written.
func TestLlama4FolderUserErrors(t *testing.T) {
	src := llama4Fixture(t)
	dir := fineTuneRun(t, src)
	config := filepath.Join(src, "config.json")
	js, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(config, bytes.Replace(js, []byte(`"Llama4ForCausalLM"`), []byte(`"Llama5ForCausalLM"`), 1), 0o644)
	stdout, stderr, status := herd(t, dir, "train", "run.yaml")
	wantUserError(t, stdout, stderr, status, config+`: unsupported architecture "Llama5ForCausalLM"`)
	os.WriteFile(config, js, 0o644)

	// The same weights as one shard of two, listed in an index; the second shard is gone.
	weights := filepath.Join(src, "model.safetensors")
	b, err := os.ReadFile(weights)
	if err != nil {
		t.Fatal(err)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+binary.LittleEndian.Uint64(b)], &header); err != nil {
		t.Fatal(err)
	}
	weightMap := map[string]string{}
	for name := range header {
		if name != "__metadata__" {
			weightMap[name] = "model-00001-of-00002.safetensors"
		}
	}
	weightMap["model.norm.weight"] = "model-00002-of-00002.safetensors"
	idx, _ := json.Marshal(map[string]any{"weight_map": weightMap})
	os.WriteFile(filepath.Join(src, "model.safetensors.index.json"), idx, 0o644)
	os.Rename(weights, filepath.Join(src, "model-00001-of-00002.safetensors"))
	stdout, stderr, status = herd(t, dir, "train", "run.yaml")
	wantUserError(t, stdout, stderr, status, filepath.Join(src, "model-00002-of-00002.safetensors")+": missing shard")
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		t.Errorf("a refused fine-tune wrote %s (%v)", filepath.Join(dir, "out"), err)
	}
}
