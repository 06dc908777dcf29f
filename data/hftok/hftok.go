// Package hftok loads a Hugging Face tokenizer.json offline and encodes text to token ids
// and back: the byte-level BPE of GPT-2, Llama 3 and Qwen (model.type "BPE" with a
// ByteLevel pre-tokenizer and decoder).
//
// Encoding follows the tokenizers library's pipeline, in its order:
//
//  1. Added tokens (special or not) are matched first, leftmost and longest, on the raw
//     text; each becomes its own id and is never normalized or split.
//  2. The rest is normalized (NFC, NFKC, NFD, NFKD, or a Sequence of them; none if null).
//  3. Pre-tokenizers split it into words: Split (a regex or a literal, behavior Isolated)
//     and ByteLevel (each UTF-8 byte mapped to a printable rune, GPT-2's bytes_to_unicode;
//     with use_regex, GPT-2's own split regex first), alone or in a Sequence.
//  4. Each word is merged by BPE: repeatedly the adjacent pair with the lowest merge rank,
//     the leftmost on a tie; with ignore_merges (Llama 3) a word that is itself in the
//     vocabulary is taken whole.
//
// Encode adds no BOS or EOS (the post_processor is not applied): where sequences start and
// end is the packer's and the chat template's business, and special tokens written in the
// text are encoded as such. Decode is the inverse (the ByteLevel decoder): it maps each id
// back to its bytes and never cleans up spaces, so Decode(Encode(s)) == s for valid UTF-8.
//
// Why a package of our own: the Go libraries for tokenizer.json either bind the Rust
// library through cgo (daulet/tokenizers: a Rust toolchain and a shared library that
// herd's builds do not have) or port it onto Go's regexp (sugarme/tokenizer), which has no
// lookahead, so that port drops the regexes' \s+(?!\S) alternative and splits whitespace
// runs differently. Byte-level BPE itself is small. The regexes here run on
// github.com/dlclark/regexp2, a backtracking engine with the same leftmost-first
// alternation and lookahead as the Oniguruma engine the Rust library uses; its \s is
// Unicode White_Space, as in Rust. (JavaScript's \s differs on U+0085 and U+FEFF, a
// known place where transformers.js and this package disagree; see docs/data.md.)
//
// Anything else in a tokenizer.json (WordPiece, Unigram, Metaspace, byte_fallback, another
// Split behavior) is a user error naming the file and the key, never a silent mis-encoding.
package hftok

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"

	"github.com/herdml/herd/internal/usererr"
)

// gpt2Split is the regex of a ByteLevel pre-tokenizer with use_regex: true.
const gpt2Split = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// Tokenizer is a loaded tokenizer.json. Encode fills a word cache and so is not safe for
// concurrent use: give each goroutine its own Load. Decode is.
type Tokenizer struct {
	name  string
	vocab int

	ids    map[string]int32 // BPE vocabulary: byte-level string -> id
	tokens []string         // id -> byte-level string, or the added token's content
	added  map[string]int32 // added tokens' content -> id
	isAdd  []bool           // id -> is an added token (decoded verbatim)
	trie   *trieNode        // added tokens, for leftmost-longest matching

	normalize    []norm.Form
	pre          []preTokenizer
	ranks        map[[2]string]int // merge pair -> rank (index in merges)
	ignoreMerges bool

	cache map[string][]int32 // word -> ids; words repeat a lot in real text
}

// Load reads a tokenizer.json. Unsupported parts are user errors naming path and key.
func Load(path string) (*Tokenizer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, usererr.New(path, "cannot read the tokenizer: %v", err)
	}
	return Parse(path, raw)
}

// file is the part of tokenizer.json that byte-level BPE uses.
type file struct {
	AddedTokens []struct {
		ID      int32  `json:"id"`
		Content string `json:"content"`
		Lstrip  bool   `json:"lstrip"`
		Rstrip  bool   `json:"rstrip"`
		Single  bool   `json:"single_word"`
	} `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        struct {
		Type         string            `json:"type"`
		Vocab        map[string]int32  `json:"vocab"`
		Merges       []json.RawMessage `json:"merges"`
		IgnoreMerges bool              `json:"ignore_merges"`
		ByteFallback bool              `json:"byte_fallback"`
		Dropout      *float64          `json:"dropout"`
		Prefix       string            `json:"continuing_subword_prefix"`
		Suffix       string            `json:"end_of_word_suffix"`
	} `json:"model"`
}

// Parse builds a Tokenizer from the bytes of a tokenizer.json; path names it in errors.
func Parse(path string, raw []byte) (*Tokenizer, error) {
	var f file
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, usererr.New(path, "not a tokenizer.json: %v", err)
	}
	bad := func(key, format string, args ...any) error {
		return usererr.New(path+": "+key, format, args...)
	}
	m := f.Model
	switch {
	case m.Type != "BPE":
		return nil, bad("model.type", "%q is not supported; herd reads byte-level BPE (type \"BPE\")", m.Type)
	case m.ByteFallback:
		return nil, bad("model.byte_fallback", "true is not supported (SentencePiece-style BPE); herd reads byte-level BPE")
	case m.Dropout != nil && *m.Dropout != 0:
		return nil, bad("model.dropout", "%v is not supported; encoding must be deterministic", *m.Dropout)
	case m.Prefix != "" || m.Suffix != "":
		return nil, bad("model.continuing_subword_prefix", "subword prefixes and suffixes are not supported")
	}
	if err := checkDecoder(f.Decoder); err != nil {
		return nil, bad("decoder", "%v", err)
	}
	t := &Tokenizer{ids: m.Vocab, added: map[string]int32{}, ignoreMerges: m.IgnoreMerges,
		ranks: make(map[[2]string]int, len(m.Merges)), cache: map[string][]int32{}}
	var err error
	if t.normalize, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, bad("normalizer", "%v", err)
	}
	if t.pre, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, bad("pre_tokenizer", "%v", err)
	}
	if len(t.pre) == 0 || !t.pre[len(t.pre)-1].byteLevel {
		return nil, bad("pre_tokenizer", "must end with a ByteLevel pre-tokenizer (byte-level BPE)")
	}
	for i, rm := range m.Merges {
		// A merge is "a b" (older files) or ["a", "b"]; byte-level symbols hold no space.
		var pair []string
		var s string
		if json.Unmarshal(rm, &s) == nil {
			pair = strings.Split(s, " ")
		} else if json.Unmarshal(rm, &pair) != nil {
			pair = nil
		}
		if len(pair) != 2 {
			return nil, bad(fmt.Sprintf("model.merges[%d]", i), "want a pair of symbols, got %s", rm)
		}
		if _, ok := t.ranks[[2]string{pair[0], pair[1]}]; !ok {
			t.ranks[[2]string{pair[0], pair[1]}] = i
		}
	}
	for tok, id := range m.Vocab {
		if id < 0 {
			return nil, bad("model.vocab", "%q has a negative id %d", tok, id)
		}
		t.vocab = max(t.vocab, int(id)+1)
	}
	for i, a := range f.AddedTokens {
		key := fmt.Sprintf("added_tokens[%d]", i)
		switch {
		case a.ID < 0 || a.Content == "":
			return nil, bad(key, "needs an id >= 0 and a non-empty content")
		case a.Lstrip || a.Rstrip || a.Single:
			return nil, bad(key, "lstrip, rstrip and single_word are not supported (%q)", a.Content)
		}
		t.added[a.Content] = a.ID
		t.vocab = max(t.vocab, int(a.ID)+1)
	}
	t.tokens = make([]string, t.vocab)
	t.isAdd = make([]bool, t.vocab)
	for tok, id := range m.Vocab {
		t.tokens[id] = tok
	}
	t.trie = &trieNode{}
	for content, id := range t.added {
		t.tokens[id] = content
		t.isAdd[id] = true
		t.trie.insert(content)
	}
	sum := sha256.Sum256(raw)
	t.name = "hf-" + hex.EncodeToString(sum[:6])
	return t, nil
}

// Name identifies the tokenizer in shard metadata: "hf-" and the start of the file's
// sha256, so that shards made with another tokenizer.json are told apart.
func (t *Tokenizer) Name() string { return t.name }

// Clone returns a tokenizer that shares t's read-only tables and has a word cache of its
// own, so that each goroutine can Encode with its own clone at no cost of loading.
func (t *Tokenizer) Clone() *Tokenizer {
	c := *t
	c.cache = map[string][]int32{}
	return &c
}

// Vocab is one more than the largest id of the vocabulary and the added tokens.
func (t *Tokenizer) Vocab() int { return t.vocab }

// ID returns an added or vocabulary token's id.
func (t *Tokenizer) ID(token string) (int32, bool) {
	if id, ok := t.added[token]; ok {
		return id, true
	}
	id, ok := t.ids[token]
	return id, ok
}

// Encode appends text's ids to dst. Text is read as UTF-8; an invalid byte reads as
// U+FFFD (the Rust library accepts only valid strings).
func (t *Tokenizer) Encode(dst []int32, text []byte) []int32 {
	s := string(text)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for len(s) > 0 {
		start, n := t.trie.leftmostLongest(s)
		dst = t.encodeSection(dst, s[:start])
		if n == 0 {
			break
		}
		dst = append(dst, t.added[s[start:start+n]])
		s = s[start+n:]
	}
	return dst
}

// encodeSection encodes text between added tokens: normalize, pre-tokenize, BPE.
func (t *Tokenizer) encodeSection(dst []int32, s string) []int32 {
	if s == "" {
		return dst
	}
	for _, f := range t.normalize {
		s = f.String(s)
	}
	words := []string{s}
	for _, p := range t.pre {
		words = p.split(words)
	}
	for _, w := range words {
		dst = append(dst, t.bpe(w)...)
	}
	return dst
}

// bpe merges one byte-level word into ids: while some adjacent pair has a merge, the pair
// with the lowest rank (the leftmost on a tie) becomes one symbol.
func (t *Tokenizer) bpe(word string) []int32 {
	if ids, ok := t.cache[word]; ok {
		return ids
	}
	if id, ok := t.ids[word]; ok && t.ignoreMerges {
		return t.remember(word, []int32{id})
	}
	sym := make([]string, 0, len(word))
	for _, r := range word {
		sym = append(sym, string(r))
	}
	for len(sym) > 1 {
		best, at := -1, -1
		for i := 0; i+1 < len(sym); i++ {
			if r, ok := t.ranks[[2]string{sym[i], sym[i+1]}]; ok && (best < 0 || r < best) {
				best, at = r, i
			}
		}
		if at < 0 {
			break
		}
		sym[at] += sym[at+1]
		sym = append(sym[:at+1], sym[at+2:]...)
	}
	ids := make([]int32, 0, len(sym))
	for _, s := range sym {
		// Every byte's rune is in a byte-level vocabulary, so a symbol is only missing
		// from a malformed file; it then has no id to give, as in the reference.
		if id, ok := t.ids[s]; ok {
			ids = append(ids, id)
		}
	}
	return t.remember(word, ids)
}

func (t *Tokenizer) remember(word string, ids []int32) []int32 {
	if len(word) < 256 {
		t.cache[word] = ids
	}
	return ids
}

// Decode returns the text of ids: an added token's content verbatim, every other token's
// bytes through the inverse byte-to-unicode map. Ids outside the vocabulary are skipped.
func (t *Tokenizer) Decode(ids []int32) string {
	var b []byte
	for _, id := range ids {
		if id < 0 || int(id) >= len(t.tokens) {
			continue
		}
		if t.isAdd[id] {
			b = append(b, t.tokens[id]...)
			continue
		}
		for _, r := range t.tokens[id] {
			if c, ok := unicodeToByte[r]; ok {
				b = append(b, c)
			}
		}
	}
	return string(b)
}

// AddedTokens lists the added tokens' contents in id order.
func (t *Tokenizer) AddedTokens() []string {
	out := make([]string, 0, len(t.added))
	for s := range t.added {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return t.added[out[i]] < t.added[out[j]] })
	return out
}

// byteToUnicode is GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves,
// the other 68 bytes to U+0100 onwards in byte order, so no byte becomes whitespace or a
// control character inside the BPE.
var byteToUnicode, unicodeToByte = func() ([256]rune, map[rune]byte) {
	var fwd [256]rune
	inv := make(map[rune]byte, 256)
	n := rune(0)
	for b := 0; b < 256; b++ {
		r := rune(b)
		if !(b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF) {
			r = 256 + n
			n++
		}
		fwd[b], inv[r] = r, byte(b)
	}
	return fwd, inv
}()

// preTokenizer is one step of the pre-tokenizer: a regex split, or the byte-level map.
type preTokenizer struct {
	re          *regexp2.Regexp // Split, or ByteLevel with use_regex
	byteLevel   bool
	prefixSpace bool // ByteLevel add_prefix_space
}

// split applies the step to every word. A regex keeps both its matches and the text
// between them (Isolated); the byte-level map turns each word's bytes into runes.
func (p preTokenizer) split(words []string) []string {
	var out []string
	for _, w := range words {
		if p.prefixSpace && !strings.HasPrefix(w, " ") {
			w = " " + w
		}
		pieces := []string{w}
		if p.re != nil {
			pieces = splitIsolated(p.re, w)
		}
		if !p.byteLevel {
			out = append(out, pieces...)
			continue
		}
		for _, piece := range pieces {
			var b strings.Builder
			for i := 0; i < len(piece); i++ {
				b.WriteRune(byteToUnicode[piece[i]])
			}
			out = append(out, b.String())
		}
	}
	return out
}

// splitIsolated cuts w into the regex's matches and the non-empty text between them.
func splitIsolated(re *regexp2.Regexp, w string) []string {
	runes := []rune(w)
	var out []string
	prev := 0
	m, _ := re.FindRunesMatch(runes)
	for m != nil {
		if m.Index > prev {
			out = append(out, string(runes[prev:m.Index]))
		}
		if m.Length > 0 {
			out = append(out, string(runes[m.Index:m.Index+m.Length]))
		}
		prev = m.Index + m.Length
		m, _ = re.FindNextMatch(m)
	}
	if prev < len(runes) {
		out = append(out, string(runes[prev:]))
	}
	return out
}

// trieNode holds the added tokens for matching at each position.
type trieNode struct {
	next map[byte]*trieNode
	end  bool
}

func (n *trieNode) insert(s string) {
	for i := 0; i < len(s); i++ {
		if n.next == nil {
			n.next = map[byte]*trieNode{}
		}
		c := n.next[s[i]]
		if c == nil {
			c = &trieNode{}
			n.next[s[i]] = c
		}
		n = c
	}
	n.end = true
}

// leftmostLongest finds the first position where an added token starts and the length of
// the longest one there; n == 0 when none occurs.
func (n *trieNode) leftmostLongest(s string) (start, length int) {
	for i := 0; i < len(s); i++ {
		if n.next[s[i]] == nil {
			continue
		}
		node, best := n, 0
		for j := i; j < len(s) && node != nil; j++ {
			if node = node.next[s[j]]; node != nil && node.end {
				best = j + 1 - i
			}
		}
		if best > 0 {
			return i, best
		}
	}
	return len(s), 0
}
