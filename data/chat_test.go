package data

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/data/hftok/hfref"
)

// chatCases are conversations with system prompts, several turns, whitespace the Llama 3
// template trims, and non-ASCII text.
var chatCases = [][]Message{
	{{"system", "You are terse."}, {"user", "What is 2+2?"}, {"assistant", "4"}},
	{{"user", "Hi"}, {"assistant", "  Hello there!\n"}, {"user", "Tell me a joke."}, {"assistant", "Why did the gopher cross the road?"}},
	{{"user", "naïve café 😀"}, {"assistant", "Oui, très bien 🙂."}, {"user", "Merci"}, {"assistant", "De rien"}},
	{{"system", "Answer in French.\n"}, {"user", "Hello"}, {"assistant", "Bonjour"}, {"user", "Thanks"}, {"assistant", "De rien !"}},
}

// assistantTurns is what each template writes for the assistant's turns of a
// conversation, from the templates' own text: Llama 3 trims each message and ends it with
// <|eot_id|>; Qwen 3 ends it with <|im_end|>, and writes an empty think block into the
// assistant's turns after the last user message when they are the conversation's last.
func assistantTurns(model string, msgs []Message) []string {
	lastUser := 0
	for i, m := range msgs {
		if m.Role == "user" {
			lastUser = i
		}
	}
	var want []string
	for i, m := range msgs {
		switch {
		case m.Role != "assistant":
		case model == "llama3":
			want = append(want, strings.TrimSpace(m.Content)+"<|eot_id|>")
		case i > lastUser && i == len(msgs)-1:
			want = append(want, "<think>\n\n</think>\n\n"+m.Content+"<|im_end|>")
		default:
			want = append(want, m.Content+"<|im_end|>")
		}
	}
	return want
}

// writeChat writes conversations as a chat JSONL file and returns its path.
func writeChat(t *testing.T, convs [][]Message) string {
	t.Helper()
	var b strings.Builder
	for _, c := range convs {
		line, err := json.Marshal(map[string]any{"messages": c})
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestChatTrainsOnlyAssistantTurns packs conversations with the real Llama 3 and Qwen 3
// tokenizers and templates, reads the rows back as batches, and checks that the trained
// targets, run by run, decode to exactly the assistant's turns with their end-of-turn
// token: every assistant token is a target, and no other token is.
func TestChatTrainsOnlyAssistantTurns(t *testing.T) {
	prefix := hfref.Prefix(t)
	for _, model := range hfref.Models {
		t.Run(model, func(t *testing.T) {
			tokPath := hfref.ModelFile(prefix, model, "tokenizer.json")
			tok, err := NewTokenizer(tokPath)
			if err != nil {
				t.Fatal(err)
			}
			tmpl, err := LoadChatTemplate(hfref.ModelFile(prefix, model, "tokenizer_config.json"), tok)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, c := range chatCases {
				want = append(want, assistantTurns(model, c)...)
			}
			const seqLen = 127 // several conversations to a row
			var stats ChatStats
			out := filepath.Join(t.TempDir(), "ds")
			m, err := Pack(ChatFiles(writeChat(t, chatCases), tmpl, seqLen+1, LongError, &stats, nil),
				PackOptions{Out: out, SeqLen: seqLen, Tokenizer: tokPath})
			if err != nil {
				t.Fatal(err)
			}
			if m.Docs != int64(len(chatCases)) || m.Rows >= int64(len(chatCases)) || stats.Conversations.Load() != int64(len(chatCases)) {
				t.Fatalf("packed %d conversations (counted %d) into %d rows; want %d, several to a row", m.Docs, stats.Conversations.Load(), m.Rows, len(chatCases))
			}
			sh, err := OpenShards(filepath.Join(out, ManifestName), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer sh.Close()
			var got []string
			var r Row
			var b Batch
			for i := range m.Rows {
				if err := sh.Row(i, &r); err != nil {
					t.Fatal(err)
				}
				b.Resize(1, seqLen)
				r.fill(&b, 0)
				var run []int32
				for p := range seqLen {
					if b.Mask[p] == 1 {
						run = append(run, b.Targets[p])
					}
					if len(run) > 0 && (b.Mask[p] == 0 || p == seqLen-1) {
						got = append(got, tok.Decode(run))
						run = nil
					}
				}
			}
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Fatalf("trained runs:\n%q\nwant the assistant turns:\n%q", got, want)
			}
		})
	}
}

// chatReferenceJS renders conversations as transformers.js' apply_chat_template does:
// @huggingface/jinja's Template over the config's chat_template, given the messages,
// add_generation_prompt and the config's special tokens.
const chatReferenceJS = `
const fs = require("fs");
const [jinja, configFile, convFile, outFile] = process.argv.slice(2);
const { Template } = require(jinja);
const cfg = JSON.parse(fs.readFileSync(configFile, "utf8"));
const special = (t) => (t && typeof t === "object" ? t.content : t);
const tmpl = new Template(cfg.chat_template);
const out = JSON.parse(fs.readFileSync(convFile, "utf8")).map(([messages, gen]) =>
  tmpl.render({ messages, add_generation_prompt: gen, bos_token: special(cfg.bos_token), eos_token: special(cfg.eos_token) }));
fs.writeFileSync(outFile, JSON.stringify(out));
`

// TestChatTemplateMatchesReference: the Llama 3 and Qwen 3 templates render each
// conversation (system prompts, several turns, whitespace, non-ASCII), and each prefix of
// it with the generation prompt (what the assistant turns are found by), byte for byte
// as transformers.js' template engine does.
func TestChatTemplateMatchesReference(t *testing.T) {
	prefix := hfref.Prefix(t)
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not found: the reference is JavaScript (.ci/run installs nodejs)")
	}
	type call struct {
		msgs []Message
		gen  bool
	}
	var calls []call
	for _, c := range chatCases {
		calls = append(calls, call{c, false})
		for i := range c {
			if c[i].Role == "assistant" {
				calls = append(calls, call{c[:i], true})
			}
		}
	}
	for _, model := range hfref.Models {
		t.Run(model, func(t *testing.T) {
			tok, err := NewTokenizer(hfref.ModelFile(prefix, model, "tokenizer.json"))
			if err != nil {
				t.Fatal(err)
			}
			config := hfref.ModelFile(prefix, model, "tokenizer_config.json")
			tmpl, err := LoadChatTemplate(config, tok)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			args := make([][2]any, len(calls))
			for i, c := range calls {
				args[i] = [2]any{c.msgs, c.gen}
			}
			raw, _ := json.Marshal(args)
			script, convFile, outFile := filepath.Join(dir, "ref.js"), filepath.Join(dir, "conv.json"), filepath.Join(dir, "out.json")
			for p, body := range map[string][]byte{script: []byte(chatReferenceJS), convFile: raw} {
				if err := os.WriteFile(p, body, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := exec.Command("node", script, hfref.Jinja(prefix), config, convFile, outFile).CombinedOutput(); err != nil {
				t.Fatalf("node: %v\n%s", err, out)
			}
			var want []string
			if raw, err = os.ReadFile(outFile); err != nil || json.Unmarshal(raw, &want) != nil || len(want) != len(calls) {
				t.Fatalf("reading the reference's output: %v (%d renderings for %d calls)", err, len(want), len(calls))
			}
			for i, c := range calls {
				got, err := tmpl.Render(c.msgs, c.gen)
				if err != nil {
					t.Fatal(err)
				}
				if got != want[i] {
					t.Errorf("%v (generation prompt %v):\n got %q\nwant %q", c.msgs, c.gen, got, want[i])
				}
			}
		})
	}
}
