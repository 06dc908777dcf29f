package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loraSets make fineTuneRun's run a LoRA fine-tune that really moves its adapters.
var loraSets = []string{"--set", "finetune.lora.rank=2", "--set", "finetune.lora.targets=[layers.*.attn.wq, layers.*.attn.wv, layers.*.ffn.w2]",
	"--set", "train.optim.lr=0.01"}

// copyDir copies the files of a flat folder into a new temporary one.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestLoRAFineTune: herd plan counts a LoRA run's trainable parameters and their memory;
// herd trains it from a herd checkpoint, generates from its checkpoint (base plus
// adapters), exports it merged, and the merged export generates too; a LoRA run on a
// Hugging Face Llama exports merged in Hugging Face's format.
func TestLoRAFineTune(t *testing.T) {
	dir := tinyRun(t) // a mixture-of-experts model: layer 1 has the shared expert
	if _, stderr, status := herd(t, dir, "train", "run.yaml"); status != 0 {
		t.Fatalf("train: %s", stderr)
	}
	ft := []string{"run.yaml", "--set", "name=lora", "--set", "init.from=out/e2e/step-00000003", "--set", "train.optim.lr=0.01"}
	lora := append(ft, "--set", "finetune.lora.rank=2",
		"--set", "finetune.lora.targets=[layers.*.attn.wq, layers.*.attn.wv, layers.0.ffn.w2, layers.1.moe.shared.w1]")
	full, stderr, status := herd(t, dir, append([]string{"plan"}, ft...)...)
	if status != 0 {
		t.Fatalf("plan: %s", stderr)
	}
	plan, stderr, status := herd(t, dir, append([]string{"plan"}, lora...)...)
	if status != 0 {
		t.Fatalf("plan: %s", stderr)
	}
	// rank 2: 2·(32+32)·2 for wq, 2·(32+16)·2 for wv, (64+32)·2 for w2, (32+32)·2 for the shared w1.
	if !strings.Contains(plan, " 768 trainable") || strings.Contains(full, " 768 trainable") {
		t.Errorf("plan of the LoRA run:\n%s\nwant 768 trainable parameters; full fine-tune:\n%s", plan, full)
	}
	if _, stderr, status := herd(t, dir, append([]string{"train"}, lora...)...); status != 0 {
		t.Fatalf("train: %s", stderr)
	}
	ckpt := filepath.Join("out", "lora", "step-00000003")
	for _, args := range [][]string{
		{"generate", ckpt, "--prompt", "func ", "--max-tokens", "3"},
		{"export", "--merge", ckpt, "merged"},
		{"generate", "merged", "--prompt", "func ", "--max-tokens", "3"},
		{"export", ckpt, "adapters"},
	} {
		if _, stderr, status := herd(t, dir, args...); status != 0 {
			t.Fatalf("herd %s: status %d: %s", strings.Join(args, " "), status, stderr)
		}
	}
	stdout, stderr, status := herd(t, dir, "generate", "adapters", "--prompt", "f", "--max-tokens", "1")
	wantUserError(t, stdout, stderr, status, "holds LoRA adapters only", "--merge")

	hf := fineTuneRun(t, hfFixture(t))
	table, stderr, status := herd(t, hf, append([]string{"metap", "table", "run.yaml", "--format", "csv"}, loraSets...)...)
	if status != 0 {
		t.Fatalf("metap table: %s", stderr)
	}
	// metap sp: A learns at train.optim.lr, B at 16 times it (LoRA+); A's init std is
	// 1/sqrt(3·in) with in = d_model = 32, B starts at 0.
	for _, row := range []string{"layers.1.attn.wv.lora_a,2x32,lora_a,0.10206207261596577,0.01,", "layers.1.attn.wv.lora_b,16x2,lora_b,0,0.16,"} {
		if !strings.Contains(table, "\n"+row) {
			t.Errorf("herd metap table has no row starting %s:\n%s", row, table)
		}
	}
	if _, stderr, status := herd(t, hf, append([]string{"train", "run.yaml"}, loraSets...)...); status != 0 {
		t.Fatalf("train: %s", stderr)
	}
	if _, stderr, status := herd(t, hf, "export", "--format", "hf", filepath.Join("out", "ft", "step-00000001"), "hf"); status != 0 {
		t.Fatalf("export --format hf: %s", stderr)
	}
}

// TestLoRAUserErrors: LoRA without init.from, a rank below 0, a target glob that matches
// nothing, and a checkpoint whose base changed are one-line user errors, exit 2.
func TestLoRAUserErrors(t *testing.T) {
	run := tinyRun(t)
	stdout, stderr, status := herd(t, run, "train", "run.yaml", "--set", "finetune.lora.rank=2")
	wantUserError(t, stdout, stderr, status, "finetune.lora: adapters train on a pretrained base: set init.from")
	base := copyDir(t, hfFixture(t))
	dir := fineTuneRun(t, base)
	stdout, stderr, status = herd(t, dir, "train", "run.yaml", "--set", "finetune.lora.rank=-1")
	wantUserError(t, stdout, stderr, status, "finetune.lora.rank: must be at least 0")
	stdout, stderr, status = herd(t, dir, "train", "run.yaml", "--set", "finetune.lora.rank=2", "--set", "finetune.lora.targets=[layers.*.attention.wq]")
	wantUserError(t, stdout, stderr, status, `finetune.lora.targets[0]: "layers.*.attention.wq" matches no tensor`)
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		t.Errorf("a refused LoRA run wrote %s (%v)", filepath.Join(dir, "out"), err)
	}

	if _, stderr, status := herd(t, dir, append([]string{"train", "run.yaml"}, loraSets...)...); status != 0 {
		t.Fatalf("train: %s", stderr)
	}
	weights := filepath.Join(base, "model.safetensors")
	b, err := os.ReadFile(weights)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1 // the last weight's lowest mantissa bit
	if err := os.WriteFile(weights, b, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status = herd(t, dir, append([]string{"train", "run.yaml"}, loraSets...)...)
	wantUserError(t, stdout, stderr, status, "the adapters were trained on base "+base, "point init.from at the base they were trained on")
	stdout, stderr, status = herd(t, dir, "export", "--merge", filepath.Join("out", "ft", "step-00000001"), "merged")
	wantUserError(t, stdout, stderr, status, "the adapters were trained on base")
}
