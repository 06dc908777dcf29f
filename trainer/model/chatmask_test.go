package model

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/data/hftok/hfref"
)

// TestChatPromptsGetNoGradient packs real chat data (the Llama 3 tokenizer and template),
// reads a row back as training does, and checks that the targets outside the assistant's
// turns contribute exactly nothing: changing every one of them leaves the loss and every
// gradient bit-identical, while changing one trained target does not.
func TestChatPromptsGetNoGradient(t *testing.T) {
	prefix := hfref.Prefix(t)
	dir := t.TempDir()
	chat := filepath.Join(dir, "chat.jsonl")
	if err := os.WriteFile(chat, []byte(
		`{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}
{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there!"}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	tokPath := hfref.ModelFile(prefix, "llama3", "tokenizer.json")
	tok, err := data.NewTokenizer(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := data.LoadChatTemplate(hfref.ModelFile(prefix, "llama3", "tokenizer_config.json"), tok)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Vision = Vision{}
	cfg.SeqLen = 95 // both conversations in one row
	var stats data.ChatStats
	if _, err := data.Pack(data.ChatFiles(chat, tmpl, cfg.SeqLen+1, data.LongError, &stats, nil),
		data.PackOptions{Out: filepath.Join(dir, "ds"), SeqLen: cfg.SeqLen, Tokenizer: tokPath}); err != nil {
		t.Fatal(err)
	}
	st, err := data.OpenShardStream(filepath.Join(dir, "ds", data.ManifestName), cfg.SeqLen, 1, 1, 0, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	var b data.Batch
	if err := st.Next(&b); err != nil {
		t.Fatal(err)
	}
	// The tiny model's vocabulary is small: fold the ids into it, which keeps the row's
	// documents and masks as packed.
	V := int32(cfg.VocabSize)
	for i := range b.Tokens {
		b.Tokens[i] %= V
		b.Targets[i] %= V
	}
	masked, trained := []int{}, []int{}
	for i, w := range b.Mask {
		if w == 0 {
			masked = append(masked, i)
		} else {
			trained = append(trained, i)
		}
	}
	if len(trained) == 0 || len(masked) < len(trained) {
		t.Fatalf("%d trained and %d masked targets; want the prompts masked and the answers trained", len(trained), len(masked))
	}

	m := newTestModel[float64](cfg, 1)
	run := func() (float64, []float64) {
		clear(m.Grads.Host())
		r := m.Forward(&b)
		m.Backward(1)
		return r.Loss + r.Aux, slices.Clone(m.Grads.Host())
	}
	loss, grads := run()
	for _, i := range masked {
		b.Targets[i] = (b.Targets[i] + 1) % V
	}
	loss2, grads2 := run()
	if loss2 != loss || !slices.Equal(grads2, grads) {
		t.Fatalf("changing the %d masked targets changed the loss (%v -> %v) or a gradient", len(masked), loss, loss2)
	}
	b.Targets[trained[0]] = (b.Targets[trained[0]] + 1) % V
	if _, grads3 := run(); slices.Equal(grads3, grads) {
		t.Fatal("changing a trained target left every gradient the same; the test would see nothing")
	}
}
