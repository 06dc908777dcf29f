package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/data/hftok/hfref"
)

// chatFolder copies the real Llama 3 tokenizer.json into dir/tok, with a
// tokenizer_config.json holding its own chat template or the given one, and returns the
// tokenizer.json's path relative to dir.
func chatFolder(t *testing.T, dir, template string) string {
	t.Helper()
	prefix := hfref.Prefix(t)
	if err := os.MkdirAll(filepath.Join(dir, "tok"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(hfref.ModelFile(prefix, "llama3", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "tokenizer_config.json" && template != "" {
			var cfg map[string]any
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg["chat_template"] = template
			b, _ = json.Marshal(cfg)
		}
		if err := os.WriteFile(filepath.Join(dir, "tok", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join("tok", "tokenizer.json")
}

func writeLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDataPackChat packs chat data with a tokenizer.json, checks that the dataset carries
// the tokenizer files (inspect decodes with them after the originals are gone), and that
// each --on-long action counts or refuses a conversation longer than a row; dropping every
// conversation, or --chat without a tokenizer.json, is a user error.
func TestDataPackChat(t *testing.T) {
	dir := t.TempDir()
	tok := chatFolder(t, dir, "")
	long := strings.Repeat("lorem ipsum ", 40)
	writeLines(t, filepath.Join(dir, "chat.jsonl"),
		`{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}`,
		``,
		`{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}`,
		`{"messages": [{"role": "user", "content": "Long?"}, {"role": "assistant", "content": "`+long+`"}]}`)
	pack := func(out, onLong string) (string, string, int) {
		return herd(t, dir, "data", "pack", "--quiet", "--seq-len", "63", "--chat", "chat.jsonl",
			"--tokenizer", tok, "--on-long", onLong, "--out", out)
	}
	for _, c := range []struct{ onLong, counts string }{
		{"drop", "3 conversations: 0 truncated, 1 dropped"},
		{"truncate", "3 conversations: 1 truncated, 0 dropped"},
	} {
		out := "ds-" + c.onLong
		stdout, stderr, status := pack(out, c.onLong)
		if status != 0 || !strings.Contains(stderr, c.counts) {
			t.Fatalf("pack --on-long %s: status %d, stderr %q; want it to report %q", c.onLong, status, stderr, c.counts)
		}
		if !strings.Contains(stdout, "tokenizer hf-") {
			t.Errorf("pack --on-long %s printed %q; want the hf- tokenizer", c.onLong, stdout)
		}
	}
	_, stderr, status := pack("ds-error", "error")
	wantUserError(t, "", stderr, status, "chat.jsonl:4", "--on-long")

	_, stderr, status = herd(t, dir, "data", "pack", "--quiet", "--seq-len", "7", "--chat", "chat.jsonl",
		"--tokenizer", tok, "--on-long", "drop", "--out", "ds-none")
	wantUserError(t, "", stderr, status, "every one was dropped")
	_, stderr, status = herd(t, dir, "data", "pack", "--quiet", "--chat", "chat.jsonl", "--out", "ds-byte")
	wantUserError(t, "", stderr, status, "--tokenizer", "tokenizer.json")
	for _, out := range []string{"ds-error", "ds-none", "ds-byte"} {
		if _, err := os.Stat(filepath.Join(dir, out)); !os.IsNotExist(err) {
			t.Errorf("a failed pack left %s behind (%v)", out, err)
		}
	}

	if err := os.RemoveAll(filepath.Join(dir, "tok")); err != nil { // the dataset's copies must do
		t.Fatal(err)
	}
	if out, errs, status := herd(t, dir, "data", "verify", "ds-drop"); status != 0 || !strings.Contains(out, "every hash and row is good") {
		t.Fatalf("verify: status %d, %s%s", status, out, errs)
	}
	stdout, stderr, status := herd(t, dir, "data", "inspect", "ds-drop", "--row", "0")
	if status != 0 || !strings.Contains(stdout, "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>") {
		t.Fatalf("inspect: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
}

// TestDataPackChatBadInput: a line without messages, an unknown role, a template that
// fails to render the conversation: each a one-line user error naming the file and line,
// exit status 2, nothing written.
func TestDataPackChatBadInput(t *testing.T) {
	good := `{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}`
	// A Llama 3 style template that refuses a message saying "boom".
	boom := `{{ bos_token }}{% for m in messages %}{% if m.content == 'boom' %}{{ raise_exception('cannot say boom') }}{% endif %}` +
		`<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}` +
		`{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}`
	for _, c := range []struct {
		name, template string
		lines          []string
		want           []string
	}{
		{"no messages", "", []string{good, `{"text": "Hi"}`}, []string{"chat.jsonl:2", `"messages"`}},
		{"unknown role", "", []string{`{"messages": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "Beep"}]}`},
			[]string{"chat.jsonl:1", "messages[1].role", "robot"}},
		{"template fails", boom, []string{good, good, `{"messages": [{"role": "user", "content": "boom"}, {"role": "assistant", "content": "Hi"}]}`},
			[]string{"chat.jsonl:3", "cannot say boom"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			tok := chatFolder(t, dir, c.template)
			writeLines(t, filepath.Join(dir, "chat.jsonl"), c.lines...)
			stdout, stderr, status := herd(t, dir, "data", "pack", "--quiet", "--seq-len", "63", "--chat", "chat.jsonl",
				"--tokenizer", tok, "--out", "ds")
			wantUserError(t, stdout, stderr, status, c.want...)
			if _, err := os.Stat(filepath.Join(dir, "ds")); !os.IsNotExist(err) {
				t.Errorf("a failed pack left ds behind (%v)", err)
			}
		})
	}
}
