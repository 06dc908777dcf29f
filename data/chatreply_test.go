package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/data/hftok/hfref"
	"github.com/herdml/herd/internal/usererr"
)

// gochatTemplate is the fine-tuning demo's template for the byte tokenizer.
const gochatTemplate = "../examples/gochat/tokenizer_config.json"

// TestByteChatTemplate: with the byte tokenizer the demo's template ends the assistant's
// turn with its eos_token "\n", after the " {" it writes; the trained bytes are exactly
// the signature line as the source reads, and Reply splits the conversation there.
func TestByteChatTemplate(t *testing.T) {
	tok, _ := NewTokenizer("byte")
	tmpl, err := LoadChatTemplate(gochatTemplate, tok)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.EndOfTurn() != "\n" || tmpl.EOS() != "\n" {
		t.Fatalf("end of turn %q, eos %q; want both \"\\n\"", tmpl.EndOfTurn(), tmpl.EOS())
	}
	msgs := []Message{{"user", "// Len returns\n// the length."}, {"assistant", "func (b *Buffer) Len() int"}}
	d, err := ChatDoc(tok, tmpl, "x.jsonl:1", msgs)
	if err != nil {
		t.Fatal(err)
	}
	var trained []int32
	for i, last := 0, int32(0); i <= len(d.NoLoss); i += 2 {
		end := int32(len(d.Tokens))
		if i < len(d.NoLoss) {
			end = d.NoLoss[i]
		}
		trained = append(trained, d.Tokens[last:end]...)
		if i+1 < len(d.NoLoss) {
			last = d.NoLoss[i+1]
		}
	}
	if got := tok.Decode(trained); got != "func (b *Buffer) Len() int {\n" {
		t.Errorf("trained on %q; want the signature line", got)
	}
	prompt, want, err := tmpl.Reply("x.jsonl:1", msgs)
	if err != nil || prompt != "// Len returns\n// the length.\n" || want != "func (b *Buffer) Len() int {\n" {
		t.Errorf("Reply: prompt %q, want %q, %v", prompt, want, err)
	}
	if prompt, want, err = tmpl.Reply("x.jsonl:2", msgs[:1]); err != nil || prompt != "// Len returns\n// the length.\n" || want != "" {
		t.Errorf("Reply without the answer: prompt %q, want %q, %v", prompt, want, err)
	}
}

// TestByteChatTemplateErrors: for a tokenizer without special tokens, an eos_token that is
// not one token, or one the template never writes after the assistant, is a user error
// naming the file.
func TestByteChatTemplateErrors(t *testing.T) {
	tok, _ := NewTokenizer("byte")
	for _, c := range []struct{ config, want string }{
		{`{"chat_template": "{% for m in messages %}{{ m.content }}\n{% endfor %}", "eos_token": "<end>"}`, "eos_token"},
		{`{"chat_template": "{% for m in messages %}{{ m.content }}\n{% endfor %}", "eos_token": ";"}`, "no special token"},
		{`{"chat_template": "{% for m in messages %}{{ m.content }}\n{% endfor %}"}`, "no special token"},
	} {
		path := filepath.Join(t.TempDir(), "tokenizer_config.json")
		if err := os.WriteFile(path, []byte(c.config), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadChatTemplate(path, tok)
		if !usererr.Is(err) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v; want a user error naming the file and %q", c.config, err, c.want)
		}
	}
}

// TestReplyRealTemplates: for Llama 3 and Qwen 3, the prompt Reply gives and the expected
// answer put together are the whole conversation's rendering, the answer ending with the
// end-of-turn token.
func TestReplyRealTemplates(t *testing.T) {
	prefix := hfref.Prefix(t)
	for _, model := range hfref.Models {
		tok, err := NewTokenizer(hfref.ModelFile(prefix, model, "tokenizer.json"))
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := LoadChatTemplate(hfref.ModelFile(prefix, model, "tokenizer_config.json"), tok)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chatCases {
			prompt, want, err := tmpl.Reply("x.jsonl:1", c)
			if err != nil {
				t.Fatal(err)
			}
			whole, _ := tmpl.Render(c, false)
			turns := assistantTurns(model, c)
			if !strings.HasPrefix(whole, prompt+want) || want != turns[len(turns)-1] {
				t.Errorf("%s %v: prompt %q + answer %q; want the rendering %q, the answer %q", model, c, prompt, want, whole, turns[len(turns)-1])
			}
		}
	}
}
