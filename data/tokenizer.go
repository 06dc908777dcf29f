package data

import (
	"strings"
	"sync"

	"github.com/pkoukk/tiktoken-go"
	tiktokenloader "github.com/pkoukk/tiktoken-go-loader"

	"github.com/herdml/herd/internal/usererr"
)

// Tokenizer turns text into token ids and back.
type Tokenizer interface {
	Name() string // id stored in the shards' metadata
	Vocab() int   // ids are in [0, Vocab)
	Encode(dst []int32, text []byte) []int32
	Decode(ids []int32) string
}

// Tokenizers lists the names NewTokenizer accepts.
var Tokenizers = []string{"byte", "o200k_base", "cl100k_base"}

// NewTokenizer returns a tokenizer by name: "byte" (each byte one token, vocabulary 256),
// or a tiktoken BPE encoding, loaded from files embedded in the binary so that it works
// offline. o200k_base is the family Llama 4's tokenizer belongs to.
func NewTokenizer(name string) (Tokenizer, error) {
	switch name {
	case "byte", "":
		return byteTokenizer{}, nil
	case "o200k_base", "cl100k_base":
		return newBPE(name)
	}
	return nil, usererr.New("--tokenizer", "unknown tokenizer %q; allowed: %s", name, strings.Join(Tokenizers, ", "))
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
