package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestGenerate trains tinyRun's model for a few steps and generates from its checkpoint as
// a user does: streamed text, --json, seeded sampling, its export, and a prompt too long. Prompt and
// tokens fit seq_len 8 (HERD_TEST_SMALL).
func TestGenerate(t *testing.T) {
	dir := tinyRun(t)
	if _, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "ckpts"); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	run := "ckpts/e2e" // its newest checkpoint
	gen := func(args ...string) generateSummary {
		t.Helper()
		from := run
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			from, args = args[0], args[1:]
		}
		stdout, stderr, status := herd(t, dir, append([]string{"generate", from, "--prompt", "func", "--max-tokens", "4", "--json"}, args...)...)
		if status != 0 {
			t.Fatalf("herd generate %v: status %d\n%s", args, status, stderr)
		}
		var s generateSummary
		if err := json.Unmarshal([]byte(stdout), &s); err != nil {
			t.Fatalf("stdout is not one JSON result: %v\n%s", err, stdout)
		}
		return s
	}

	greedy := gen()
	if len(greedy.IDs) != 4 || greedy.Stop != "max_tokens" || !(greedy.TokensPerS > 0) {
		t.Errorf("greedy result %+v: want 4 tokens, stopped at max_tokens", greedy)
	}
	if want := []int32{'f', 'u', 'n', 'c'}; !slices.Equal(greedy.PromptIDs, want) {
		t.Errorf("prompt ids %v, want its bytes %v", greedy.PromptIDs, want)
	}
	var text []byte
	for _, id := range greedy.IDs {
		text = append(text, byte(id))
	}
	if greedy.Text != string(text) {
		t.Errorf("text %q is not the bytes of ids %v", greedy.Text, greedy.IDs)
	}

	// Streaming prints the same text on stdout; the summary goes to stderr.
	stdout, stderr, status := herd(t, dir, "generate", run, "--prompt", "func", "--max-tokens", "4")
	if status != 0 || stdout != greedy.Text+"\n" || !strings.Contains(stderr, "4 tokens") {
		t.Errorf("streamed: status %d, stdout %q (want %q), stderr %q", status, stdout, greedy.Text+"\n", stderr)
	}

	a, b := gen("--temperature", "1", "--seed", "3"), gen("--temperature", "1", "--seed", "3")
	if a.Text != b.Text {
		t.Errorf("seed 3 sampled %q, then %q", a.Text, b.Text)
	}
	if k1 := gen("--temperature", "1", "--seed", "3", "--top-k", "1"); k1.Text != greedy.Text {
		t.Errorf("--top-k 1 sampled %q, greedy gave %q", k1.Text, greedy.Text)
	}

	// The checkpoint's export computes the same forward pass: the same tokens.
	if _, stderr, status := herd(t, dir, "export", run, "exported"); status != 0 {
		t.Fatalf("herd export: status %d\n%s", status, stderr)
	}
	if ex := gen("exported"); !slices.Equal(ex.IDs, greedy.IDs) {
		t.Errorf("the export generated %v, its checkpoint %v", ex.IDs, greedy.IDs)
	}
	if err := os.Remove(filepath.Join(dir, "exported", "model.safetensors")); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status = herd(t, dir, "generate", "exported", "--prompt", "x")
	wantUserError(t, stdout, stderr, status, filepath.Join("exported", "model.safetensors"), "missing")

	stdout, stderr, status = herd(t, dir, "generate", run, "--prompt", strings.Repeat("x", 40))
	wantUserError(t, stdout, stderr, status, "--prompt", "40 tokens", "seq_len")
}

func TestGenerateUserErrors(t *testing.T) {
	dir := tinyRun(t)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"generate", "nothing-here", "--prompt", "x"}, []string{"nothing-here"}},
		{[]string{"generate", "run.yaml", "--prompt", "x"}, []string{"run.yaml", "is a file"}},
		{[]string{"generate", "ckpts", "--prompt", "x", "--temperature", "-1"}, []string{"--temperature", "-1"}},
		{[]string{"generate", "ckpts", "--prompt", "x", "--top-p", "2"}, []string{"--top-p", "(0, 1]"}},
		{[]string{"generate", "ckpts", "--prompt", ""}, []string{"--prompt", "required"}},
		{[]string{"generate", "ckpts", "--prompt", "x", "--tokenizer", "nope"}, []string{"--tokenizer", "nope"}},
	} {
		stdout, stderr, status := herd(t, dir, c.args...)
		wantUserError(t, stdout, stderr, status, c.want...)
	}
}

// TestGenerateFP8: a run trained in FP8 generates through its FP8 linears and activation
// codec, the same tokens twice (its scaling frozen while it generates).
func TestGenerateFP8(t *testing.T) {
	dir := tinyRun(t)
	if _, stderr, status := herd(t, dir, "train", "run.yaml", "--out", "ckpts", "--set", "train.precision=fp8"); status != 0 {
		t.Fatalf("herd train: status %d\n%s", status, stderr)
	}
	var runs [2]generateSummary
	for i := range runs {
		stdout, stderr, status := herd(t, dir, "generate", "ckpts/e2e", "--prompt", "func", "--max-tokens", "4", "--json")
		if status != 0 {
			t.Fatalf("herd generate: status %d\n%s", status, stderr)
		}
		if err := json.Unmarshal([]byte(stdout), &runs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if len(runs[0].IDs) != 4 || !slices.Equal(runs[0].IDs, runs[1].IDs) {
		t.Errorf("generated %v, then %v", runs[0].IDs, runs[1].IDs)
	}
}

// A Hugging Face Llama folder is opened as one (its own config, not an export's): the
// byte tokenizer's 256 ids do not fit the fixture's vocabulary of 64, which the error
// names; with a tokenizer.json given by path, an unreadable one is named.
func TestGenerateHuggingFaceFolder(t *testing.T) {
	dir := t.TempDir()
	hfDir, err := filepath.Abs(filepath.Join("..", "..", "trainer", "hf", "testdata", "llama-f32"))
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, status := herd(t, dir, "generate", hfDir, "--prompt", "func")
	wantUserError(t, stdout, stderr, status, "--tokenizer", "256 tokens", "vocab_size 64")
	stdout, stderr, status = herd(t, dir, "generate", hfDir, "--prompt", "func", "--tokenizer", filepath.Join(dir, "tokenizer.json"))
	wantUserError(t, stdout, stderr, status, "tokenizer.json")
}
