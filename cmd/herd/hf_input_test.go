package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// copyHFFixture copies trainer/hf's Hugging Face fixture name into dir/name and returns
// that folder's absolute path.
func copyHFFixture(t *testing.T, dir, name string) string {
	t.Helper()
	src := filepath.Join("..", "..", "trainer", "hf", "testdata", name)
	dst, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(src, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestHuggingFaceFolderBadInput: a Hugging Face folder with a missing shard, or with an
// architecture herd does not load, is one line naming the shard or the architecture,
// exit status 2, for a fine-tune from it (which writes no checkpoint) and for generate
// (which prints nothing on stdout).
func TestHuggingFaceFolderBadInput(t *testing.T) {
	for _, c := range []struct {
		name, fixture string
		damage        func(t *testing.T, dir string)
		want          []string
	}{
		{"missing shard", "llama-sharded", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors")); err != nil {
				t.Fatal(err)
			}
		}, []string{"model-00002-of-00002.safetensors", "missing shard"}},
		{"unsupported architecture", "llama-f32", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "config.json")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var cfg map[string]any
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg["architectures"] = []string{"GPT2LMHeadModel"}
			b, _ = json.Marshal(cfg)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"config.json", "GPT2LMHeadModel"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			work := t.TempDir()
			src := copyHFFixture(t, t.TempDir(), c.fixture)
			c.damage(t, src)
			dir := fineTuneRun(t, src)
			stdout, stderr, status := herd(t, dir, "train", "run.yaml")
			wantUserError(t, stdout, stderr, status, c.want...)
			if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
				t.Errorf("a refused fine-tune wrote %s (%v)", filepath.Join(dir, "out"), err)
			}
			stdout, stderr, status = herd(t, work, "generate", src, "--prompt", "x")
			wantUserError(t, stdout, stderr, status, c.want...)
			if entries, _ := os.ReadDir(work); len(entries) != 0 {
				t.Errorf("generate wrote %d files into its folder", len(entries))
			}
		})
	}
}
