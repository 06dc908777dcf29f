package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// hfFixture is the Hugging Face Llama that tools/hfref/make_fixture.py wrote (untied
// embeddings, grouped-query attention, F32).
func hfFixture(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "trainer", "hf", "testdata", "llama-f32"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// fineTuneRun writes a config that fine-tunes from from on synthetic tokens, naming no
// model keys but seq_len, and returns its folder. With metap sp the forward multipliers
// are 1, as in transformers; a learning rate of 1e-30 leaves every weight's bits as they
// were, so the export can be compared with the source bit for bit.
func fineTuneRun(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := `
name: ft
init: {from: ` + from + `}
model: {seq_len: 16}
data: {synthetic: true}
train:
  steps: 1
  global_batch: 2
  micro_batch: 2
  optim: {lr: 1.0e-30, weight_decay: 0}
  schedule: {warmup: 0, decay: constant}
  checkpoint: {every: 0, keep: 1, dir: out}
metap: {mode: sp}
`
	if err := os.WriteFile(filepath.Join(dir, "run.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestFineTuneFromHuggingFaceAndExport: herd trains from a Hugging Face folder and
// `herd export --format hf` gives back its model.safetensors, byte for byte.
func TestFineTuneFromHuggingFaceAndExport(t *testing.T) {
	trainAndExportHF(t, hfFixture(t))
}

// trainAndExportHF trains fineTuneRun's one step from the Hugging Face folder src, exports
// the checkpoint with --format hf into DIR/exported and checks that its tensors are the
// source's, byte for byte; it returns DIR.
func trainAndExportHF(t *testing.T, src string) string {
	t.Helper()
	dir := fineTuneRun(t, src)
	if _, stderr, status := herd(t, dir, "train", "run.yaml"); status != 0 {
		t.Fatalf("train: status %d: %s", status, stderr)
	}
	ckpt := filepath.Join("out", "ft", "step-00000001")
	if _, stderr, status := herd(t, dir, "export", "--format", "hf", ckpt, "exported"); status != 0 {
		t.Fatalf("export: status %d: %s", status, stderr)
	}
	want, err := os.ReadFile(filepath.Join(src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "exported", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	// The headers differ in their metadata; every tensor's bytes are in the same order
	// (sorted names) and must be equal.
	data := func(b []byte) []byte { return b[8+binary.LittleEndian.Uint64(b):] }
	if len(got) < 8 || !bytes.Equal(data(got), data(want)) {
		t.Fatal("the exported tensors differ from the Hugging Face source's")
	}
	return dir
}

func TestFineTuneUserErrors(t *testing.T) {
	src := hfFixture(t)
	dir := fineTuneRun(t, src)
	stdout, stderr, status := herd(t, dir, "train", "run.yaml", "--set", "model.d_model=64")
	wantUserError(t, stdout, stderr, status, "model.d_model: is 64, but init.from "+src+" has 32")
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		t.Errorf("a refused fine-tune wrote %s (%v)", filepath.Join(dir, "out"), err)
	}

	stdout, stderr, status = herd(t, dir, "train", "run.yaml", "--set", "init.from="+t.TempDir())
	wantUserError(t, stdout, stderr, status, "init.from", "no valid checkpoint")
	t.Log(stderr)

	run := tinyRun(t) // a mixture-of-experts model
	if _, stderr, status := herd(t, run, "train", "run.yaml"); status != 0 {
		t.Fatalf("train: %s", stderr)
	}
	stdout, stderr, status = herd(t, run, "export", "--format", "hf", "out/e2e", "hf")
	wantUserError(t, stdout, stderr, status, "model.moe.score_on_input: is false: Llama 4 scales a routed expert's input")
	stdout, stderr, status = herd(t, run, "export", "--format", "onnx", "out/e2e", "x")
	wantUserError(t, stdout, stderr, status, `--format: unknown format "onnx"; allowed: herd, hf`)
}
