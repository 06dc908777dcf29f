package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/ardanlabs/jinja"

	"github.com/herdml/herd/internal/usererr"
)

// Chat data for supervised fine-tuning: JSONL lines {"messages": [{"role": ..., "content":
// ...}]} (the TRL and OpenAI layout), each conversation rendered with the chat template of
// a Hugging Face tokenizer_config.json and trained only on what the assistant says.
//
// Finding the assistant turns. The rendered text is the template's business (Qwen 3, for
// one, writes an empty <think> block only into the last assistant turn, and Llama 3 trims
// each message), so herd does not mark the messages' text and look for the marks, which a
// template that trims, splits or strips content would move or drop. It renders the
// conversation prefix by prefix instead: the assistant's turn i starts where the rendering
// of messages[:i] with the generation prompt ends (the text a model is given before it
// answers; it must be a prefix of the whole rendering) and ends after the first end-of-turn
// token from there. The end-of-turn token is the template's own: the special token it
// writes right after an assistant message's content, found once by rendering a probe
// conversation. A tokenizer without special tokens (bytes) ends the turn with the config's
// eos_token instead, which must be one token and which the template must write after the
// assistant's content: examples/gochat's template writes a Go signature then " {\n", and
// its eos_token "\n" ends the turn. The whole text is then encoded in one piece, exactly
// as any reader of the rendered text encodes it, and a token is trained when its first
// byte lies in an assistant turn.

// ChatRoles are the roles a message may have.
var ChatRoles = []string{"system", "user", "assistant"}

// OnLong says what to do with a conversation longer than a row (seq_len+1 tokens).
type OnLong string

const (
	LongError    OnLong = "error"    // stop the pack with a user error naming the line
	LongTruncate OnLong = "truncate" // keep its first seq_len+1 tokens
	LongDrop     OnLong = "drop"     // leave it out
)

// ChatTemplate renders conversations with a tokenizer_config.json's chat_template.
type ChatTemplate struct {
	path     string
	tmpl     *jinja.Template
	bos, eos string
	eot      string // the special token the template writes after each assistant message
}

// tokenizerConfig is the part of tokenizer_config.json a chat template uses. Special
// tokens are a string or an object with a "content" (older files).
type tokenizerConfig struct {
	ChatTemplate json.RawMessage `json:"chat_template"`
	BOS          json.RawMessage `json:"bos_token"`
	EOS          json.RawMessage `json:"eos_token"`
}

// EOSToken is the eos_token of the tokenizer_config.json at path: "" when it has none or
// the file does not exist.
func EOSToken(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", usererr.New(path, "cannot read: %v", err)
	}
	var cfg tokenizerConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", usererr.New(path, "not a tokenizer_config.json: %v", err)
	}
	return specialToken(cfg.EOS), nil
}

func specialToken(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Content string `json:"content"`
	}
	json.Unmarshal(raw, &o)
	return o.Content
}

// LoadChatTemplate reads the chat template of the tokenizer_config.json at path, for tok.
// The template's end-of-turn token is one of a Hugging Face tokenizer's added tokens, or,
// for a tokenizer without any (bytes), the config's eos_token, which must encode to one
// token (see the package comment above).
func LoadChatTemplate(path string, tok Tokenizer) (*ChatTemplate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, usererr.New(path, "cannot read the chat template: %v; chat data needs a tokenizer_config.json: the one beside --tokenizer PATH/tokenizer.json, or --chat-template FILE", err)
	}
	var cfg tokenizerConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, usererr.New(path, "not a tokenizer_config.json: %v", err)
	}
	src, err := templateSource(cfg.ChatTemplate)
	if err != nil {
		return nil, usererr.New(path+": chat_template", "%v", err)
	}
	tmpl, err := jinja.Compile(src)
	if err != nil {
		return nil, usererr.New(path+": chat_template", "does not compile: %v", err)
	}
	c := &ChatTemplate{path: path, tmpl: tmpl, bos: specialToken(cfg.BOS), eos: specialToken(cfg.EOS)}
	var specials []string
	if hf, ok := tok.(*hfTokenizer); ok {
		specials = hf.AddedTokens()
	} else if c.eos != "" && len(tok.Encode(nil, []byte(c.eos))) != 1 {
		return nil, usererr.New(path+": eos_token", "%q is %d tokens of tokenizer %s; it ends the assistant's turn, so it must be one", c.eos, len(tok.Encode(nil, []byte(c.eos))), tok.Name())
	}
	if c.eot, err = c.endOfTurn(specials); err != nil {
		return nil, err
	}
	return c, nil
}

// EOS is the config's eos_token ("" if it has none).
func (c *ChatTemplate) EOS() string { return c.eos }

// EndOfTurn is the token that ends the assistant's turn.
func (c *ChatTemplate) EndOfTurn() string { return c.eot }

// templateSource returns the template text: a string, or the one named "default" of a
// list of {name, template}.
func templateSource(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s, nil
	}
	var named []struct{ Name, Template string }
	if json.Unmarshal(raw, &named) == nil {
		for _, n := range named {
			if n.Name == "default" {
				return n.Template, nil
			}
		}
	}
	return "", fmt.Errorf("missing: chat data needs a chat template (a string, or a list with one named \"default\")")
}

// Render renders a conversation as the template writes it; with generation set, followed
// by the prompt for the assistant's next turn.
func (c *ChatTemplate) Render(msgs []Message, generation bool) (string, error) {
	list := make([]any, len(msgs))
	for i, m := range msgs {
		list[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	return c.tmpl.Render(map[string]any{"messages": list, "add_generation_prompt": generation,
		"bos_token": c.bos, "eos_token": c.eos})
}

// endOfTurn finds the template's end-of-turn token: the longest of specials that starts
// the text written right after an assistant message's content; without specials, the
// eos_token when the template writes it after the content.
func (c *ChatTemplate) endOfTurn(specials []string) (string, error) {
	const answer = "herd-probe-answer"
	bad := func(format string, args ...any) error {
		return usererr.New(c.path+": chat_template", format, args...)
	}
	prompt, err := c.Render([]Message{{"user", "herd-probe-question"}}, true)
	if err != nil {
		return "", bad("fails to render a one-message conversation: %v", err)
	}
	whole, err := c.Render([]Message{{"user", "herd-probe-question"}, {"assistant", answer}}, false)
	if err != nil {
		return "", bad("fails to render a two-message conversation: %v", err)
	}
	i := strings.Index(whole, answer)
	if !strings.HasPrefix(whole, prompt) || i < len(prompt) {
		return "", bad("renders a conversation's start with the generation prompt as text that does not start the whole conversation; herd finds assistant turns by rendering prefix by prefix")
	}
	after, eot := whole[i+len(answer):], ""
	for _, a := range specials {
		if strings.HasPrefix(after, a) && len(a) > len(eot) {
			eot = a
		}
	}
	if specials == nil && c.eos != "" && strings.Contains(after, c.eos) {
		eot = c.eos
	}
	if eot == "" {
		return "", bad("writes no special token right after an assistant message (%q follows it), nor, for a tokenizer without special tokens, the eos_token; herd needs one to end the assistant's turn", after)
	}
	return eot, nil
}

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Assistant renders a conversation and returns the text and the [start, end) byte ranges
// of the assistant's turns in it (see the package comment above), pairs in order.
func (c *ChatTemplate) Assistant(where string, msgs []Message) (string, []int, error) {
	text, err := c.Render(msgs, false)
	if err != nil {
		return "", nil, usererr.New(where, "the chat template (%s) fails to render this conversation: %v", c.path, err)
	}
	var spans []int
	for i, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		prompt, err := c.Render(msgs[:i], true)
		if err != nil {
			return "", nil, usererr.New(where, "the chat template (%s) fails to render messages[:%d] with the generation prompt: %v", c.path, i, err)
		}
		if !strings.HasPrefix(text, prompt) || (len(spans) > 0 && len(prompt) < spans[len(spans)-1]) {
			return "", nil, usererr.New(where, "messages[%d]: the chat template (%s) renders the conversation before it, with the generation prompt, as text that does not start the whole conversation, so its turn cannot be found", i, c.path)
		}
		end := strings.Index(text[len(prompt):], c.eot)
		if end < 0 {
			return "", nil, usererr.New(where, "messages[%d]: the chat template (%s) writes no %s after it", i, c.path, c.eot)
		}
		spans = append(spans, len(prompt), len(prompt)+end+len(c.eot))
	}
	return text, spans, nil
}

// Reply splits a conversation for generation: prompt is the rendering a model answers,
// with the generation prompt. When the conversation ends with an assistant turn, that turn
// is the expected answer: it is left out of the prompt, and want is its text as the
// template renders it, end-of-turn token included (what ChatDoc trains on); else want is
// "". Errors are user errors located at where.
func (c *ChatTemplate) Reply(where string, msgs []Message) (prompt, want string, err error) {
	if last := len(msgs) - 1; msgs[last].Role != "assistant" {
		prompt, err = c.Render(msgs, true)
		if err != nil {
			return "", "", usererr.New(where, "the chat template (%s) fails to render this conversation: %v", c.path, err)
		}
		return prompt, "", nil
	}
	text, spans, err := c.Assistant(where, msgs)
	if err != nil {
		return "", "", err
	}
	start, end := spans[len(spans)-2], spans[len(spans)-1]
	return text[:start], text[start:end], nil
}

// ChatDoc renders and encodes one conversation: every token outside the assistant's turns
// is in a NoLoss range. The document is never split across rows.
func ChatDoc(tok Tokenizer, c *ChatTemplate, where string, msgs []Message) (*Doc, error) {
	text, spans, err := c.Assistant(where, msgs)
	if err != nil {
		return nil, err
	}
	d := &Doc{Where: where, Whole: true, Tokens: tok.Encode(nil, []byte(text))}
	at, k := 0, 0 // byte offset of token j; spans[k:] are the turns not yet passed
	open := -1    // start of the NoLoss range in progress, -1 if none
	for j, id := range d.Tokens {
		for k < len(spans) && at >= spans[k+1] {
			k += 2
		}
		trained := k < len(spans) && at >= spans[k]
		switch {
		case !trained && open < 0:
			open = j
		case trained && open >= 0:
			d.NoLoss = append(d.NoLoss, int32(open), int32(j))
			open = -1
		}
		at += len(tok.Decode([]int32{id}))
	}
	if open >= 0 {
		d.NoLoss = append(d.NoLoss, int32(open), int32(len(d.Tokens)))
	}
	return d, nil
}

// ChatStats counts what a chat pack did with its conversations.
type ChatStats struct {
	Conversations, Truncated, Dropped atomic.Int64
}

// ChatFiles reads the conversations of the JSONL files pattern selects, one per line, and
// emits each as a document that tokenizes itself with ChatDoc. A conversation of more than
// L tokens is handled as onLong says and counted in stats.
func ChatFiles(pattern string, c *ChatTemplate, L int, onLong OnLong, stats *ChatStats, progress func(int64)) func(emit func(*RawDoc) error) error {
	return nonEmpty(pattern, func(emit func(*RawDoc) error) error {
		files, err := Glob(pattern)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := ReadChat(f.Path, progress, func(where string, msgs []Message) error {
				return emit(&RawDoc{Where: where, Tokenize: func(tok Tokenizer) (*Doc, error) {
					d, err := ChatDoc(tok, c, where, msgs)
					if err != nil {
						return nil, err
					}
					return fitRow(d, L, onLong, stats)
				}})
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// fitRow applies onLong to a conversation longer than a row of L tokens.
func fitRow(d *Doc, L int, onLong OnLong, stats *ChatStats) (*Doc, error) {
	stats.Conversations.Add(1)
	if len(d.Tokens) <= L {
		return d, nil
	}
	switch onLong {
	case LongDrop:
		stats.Dropped.Add(1)
		return &Doc{Where: d.Where}, nil
	case LongTruncate:
		stats.Truncated.Add(1)
		d.Tokens = d.Tokens[:L]
		var kept []int32
		for i := 0; i+1 < len(d.NoLoss); i += 2 {
			if a, b := d.NoLoss[i], min(d.NoLoss[i+1], int32(L)); a < b {
				kept = append(kept, a, b)
			}
		}
		d.NoLoss = kept
		return d, nil
	}
	return nil, usererr.New(d.Where, "the conversation renders to %d tokens but a row holds seq_len+1 = %d; raise --seq-len, or pass --on-long truncate or drop", len(d.Tokens), L)
}

// ReadChat calls conv with each conversation of a JSONL file and its file:line, and
// progress (if not nil) with each line's length. A blank line is skipped; a line that is
// not {"messages": [...]} with known roles and string contents is a user error naming it.
func ReadChat(name string, progress func(int64), conv func(where string, msgs []Message) error) error {
	return eachLine(name, progress, func(where string, line []byte) error {
		if len(bytes.TrimSpace(line)) == 0 {
			return nil
		}
		msgs, err := parseConversation(where, line)
		if err != nil {
			return err
		}
		return conv(where, msgs)
	})
}

func parseConversation(where string, line []byte) ([]Message, error) {
	var rec struct {
		Messages []map[string]json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(line, &rec); err != nil {
		return nil, usererr.New(where, "not a JSON object with a \"messages\" list: %v", err)
	}
	if len(rec.Messages) == 0 {
		return nil, usererr.New(where, "has no \"messages\" (want {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}, ...]})")
	}
	msgs := make([]Message, len(rec.Messages))
	for i, m := range rec.Messages {
		role, ok := m["role"]
		if !ok {
			role = json.RawMessage("missing")
		}
		if json.Unmarshal(role, &msgs[i].Role) != nil || !slices.Contains(ChatRoles, msgs[i].Role) {
			return nil, usererr.New(where, "messages[%d].role is %s; allowed: %s", i, role, strings.Join(ChatRoles, ", "))
		}
		if json.Unmarshal(m["content"], &msgs[i].Content) != nil {
			return nil, usererr.New(where, "messages[%d].content is not a string", i)
		}
	}
	return msgs, nil
}
