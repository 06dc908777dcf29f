package data

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pkoukk/tiktoken-go"
	tiktokenloader "github.com/pkoukk/tiktoken-go-loader"

	"github.com/herdml/herd/data/hftok"
	"github.com/herdml/herd/internal/usererr"
)

// Tokenizer turns text into token ids and back.
type Tokenizer interface {
	Name() string // id stored in the shards' metadata
	Vocab() int   // ids are in [0, Vocab)
	Encode(dst []int32, text []byte) []int32
	Decode(ids []int32) string
}

// Tokenizers lists the names NewTokenizer accepts, besides a path to a tokenizer.json.
var Tokenizers = []string{"byte", "o200k_base", "cl100k_base"}

// NewTokenizer returns a tokenizer by name: "byte" (each byte one token, vocabulary 256),
// a tiktoken BPE encoding, loaded from files embedded in the binary so that it works
// offline (o200k_base is the family Llama 4's tokenizer belongs to), or a Hugging Face
// tokenizer.json named by its path (any name ending in .json; see package hftok).
func NewTokenizer(name string) (Tokenizer, error) {
	switch name {
	case "byte", "":
		return byteTokenizer{}, nil
	case "o200k_base", "cl100k_base":
		return newBPE(name)
	}
	if strings.HasSuffix(name, ".json") {
		return loadHF(name)
	}
	return nil, usererr.New("--tokenizer", "unknown tokenizer %q; allowed: %s, or a path to a tokenizer.json", name, strings.Join(Tokenizers, ", "))
}

// HFFiles are the files of a Hugging Face tokenizer that a pack copies into the dataset
// folder (the second only where it exists beside the first), so that the dataset carries
// what decodes it: its manifest names the tokenizer only by hash ("hf-<hash>").
var HFFiles = []string{"tokenizer.json", "tokenizer_config.json"}

// OpenTokenizer returns the tokenizer a dataset's manifest names: as NewTokenizer, and for
// a Hugging Face tokenizer ("hf-<hash>") the tokenizer.json in the dataset folder dir,
// which must hash to that name.
func OpenTokenizer(name, dir string) (Tokenizer, error) {
	if !strings.HasPrefix(name, "hf-") {
		return NewTokenizer(name)
	}
	path := filepath.Join(dir, HFFiles[0])
	tok, err := loadHF(path)
	if err != nil {
		return nil, err
	}
	if tok.Name() != name {
		return nil, usererr.New(path, "is tokenizer %s but the dataset was packed with %s; copy the tokenizer.json it was packed with here", tok.Name(), name)
	}
	return tok, nil
}

// CopyHF copies the Hugging Face tokenizer files beside tokenizerJSON into dir and returns
// the paths it wrote.
func CopyHF(tokenizerJSON, dir string) ([]string, error) {
	var wrote []string
	for i, name := range HFFiles {
		src := filepath.Join(filepath.Dir(tokenizerJSON), name)
		if i == 0 {
			src = tokenizerJSON
		}
		in, err := os.Open(src)
		if os.IsNotExist(err) && i > 0 {
			continue
		}
		if err != nil {
			return wrote, usererr.New(src, "cannot read: %v", err)
		}
		dst := filepath.Join(dir, name)
		out, err := os.Create(dst)
		if err == nil {
			wrote = append(wrote, dst)
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		in.Close()
		if err != nil {
			return wrote, fmt.Errorf("copying %s into the dataset: %w", src, err)
		}
	}
	return wrote, nil
}

// hfTokenizer makes an hftok.Tokenizer safe for concurrent use: each Encode borrows a
// clone (see hftok.Tokenizer.Clone), so the packer's workers encode in parallel.
type hfTokenizer struct {
	*hftok.Tokenizer
	clones sync.Pool
}

func loadHF(path string) (*hfTokenizer, error) {
	t, err := hftok.Load(path)
	if err != nil {
		return nil, err
	}
	h := &hfTokenizer{Tokenizer: t}
	h.clones.New = func() any { return t.Clone() }
	return h, nil
}

func (h *hfTokenizer) Encode(dst []int32, text []byte) []int32 {
	c := h.clones.Get().(*hftok.Tokenizer)
	defer h.clones.Put(c)
	return c.Encode(dst, text)
}

type byteTokenizer struct{}

func (byteTokenizer) Name() string { return "byte" }
func (byteTokenizer) Vocab() int   { return 256 }
func (byteTokenizer) Encode(dst []int32, text []byte) []int32 {
	for _, c := range text {
		dst = append(dst, int32(c))
	}
	return dst
}
func (byteTokenizer) Decode(ids []int32) string {
	b := make([]byte, len(ids))
	for i, v := range ids {
		b[i] = byte(v)
	}
	return string(b)
}

// bpeVocab is each encoding's vocabulary size: its largest id, a special token, plus one.
var bpeVocab = map[string]int{"o200k_base": 200019, "cl100k_base": 100277}

var loadBPE sync.Once

type bpe struct {
	name string
	enc  *tiktoken.Tiktoken
}

func newBPE(name string) (Tokenizer, error) {
	loadBPE.Do(func() { tiktoken.SetBpeLoader(tiktokenloader.NewOfflineLoader()) })
	enc, err := tiktoken.GetEncoding(name)
	if err != nil {
		return nil, err
	}
	return bpe{name, enc}, nil
}

func (t bpe) Name() string { return t.name }
func (t bpe) Vocab() int   { return bpeVocab[t.name] }

// Encode treats special-token text such as <|endoftext|> as ordinary text: documents are
// delimited by the format's segments, never by text inside them.
func (t bpe) Encode(dst []int32, text []byte) []int32 {
	for _, id := range t.enc.EncodeOrdinary(string(text)) {
		dst = append(dst, int32(id))
	}
	return dst
}

func (t bpe) Decode(ids []int32) string {
	v := make([]int, len(ids))
	for i, id := range ids {
		v[i] = int(id)
	}
	return t.enc.Decode(v)
}
