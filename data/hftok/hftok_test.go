package hftok

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// tiny is a byte-level BPE tokenizer.json small enough to reason about by hand.
const tiny = `{
  "added_tokens": [{"id": 9, "content": "<s>", "special": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": " ?\\S+|\\s+"}, "behavior": "Isolated", "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "aa": 2, "ab": 3, "Ġ": 4, "Ġa": 5},
            "merges": ["a a", ["a", "b"], "Ġ a"]}
}`

func writeTokenizer(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMergesByRankLeftmostFirst: "aaab" merges (a,a) at the left first, then (a,b): aa ab;
// a space is byte-mapped to Ġ and merges with what follows; <s> is matched before all.
func TestMergesByRankLeftmostFirst(t *testing.T) {
	tk, err := Load(writeTokenizer(t, tiny))
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string][]int32{
		"aaab":      {2, 3},
		"aaa":       {2, 0},
		"a<s>aab a": {0, 9, 2, 1, 5},
		"<s><s>":    {9, 9},
	} {
		got := tk.Encode(nil, []byte(text))
		if !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want %v", text, got, want)
		}
		if back := tk.Decode(got); back != text {
			t.Errorf("Decode(%v) = %q, want %q", got, back, text)
		}
	}
	if tk.Vocab() != 10 {
		t.Errorf("Vocab() = %d, want 10", tk.Vocab())
	}
}

// TestUnsupportedIsUserError: what this package cannot encode exactly is refused with a
// user error that names the file and the key.
func TestUnsupportedIsUserError(t *testing.T) {
	for _, c := range []struct{ from, to, key string }{
		{`"type": "BPE"`, `"type": "WordPiece"`, "model.type"},
		{`{"type": "Sequence", "pretokenizers": [`, `{"type": "Sequence", "pretokenizers": [{"type": "Metaspace"}, `, "pre_tokenizer"},
		{`"behavior": "Isolated"`, `"behavior": "Removed"`, "pre_tokenizer"},
		{`"normalizer": null`, `"normalizer": {"type": "Lowercase"}`, "normalizer"},
		{`{"type": "ByteLevel"}`, `{"type": "Metaspace"}`, "decoder"},
		{`"Ġ a"]`, `"Ġ a b"]`, "model.merges[2]"},
	} {
		body := strings.Replace(tiny, c.from, c.to, 1)
		if body == tiny {
			t.Fatalf("%q not in the test tokenizer", c.from)
		}
		path := writeTokenizer(t, body)
		_, err := Load(path)
		if !usererr.Is(err) || !strings.HasPrefix(err.Error(), path+": "+c.key+": ") {
			t.Errorf("%s: got %v, want a user error starting %q", c.to, err, path+": "+c.key+": ")
		}
	}
}
