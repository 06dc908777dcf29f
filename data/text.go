package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/herdml/herd/internal/usererr"
)

// Text files as a Source: byte-level tokens (vocabulary 256), each file one document,
// documents concatenated in path order and cut into rows of T+1 tokens. The last row is
// padded with token 0, which is never trained on.

// Split selects part of a text corpus by file, so that training and held-out data stay
// disjoint without keeping two copies.
type Split int

const (
	SplitAll   Split = iota // every file
	SplitTrain              // files not in the eval split
	SplitEval               // files whose path hash falls in the eval fraction
)

// EvalPercent is the share of files held out for evaluation: a file is in the eval split
// when FNV-1a-64 of its path relative to the glob's fixed leading folder, modulo 100, is
// below EvalPercent. Relative paths keep the split the same wherever the corpus lives.
const EvalPercent = 5

func (s Split) keep(rel string) bool {
	if s == SplitAll {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(rel))
	return (h.Sum64()%100 < EvalPercent) == (s == SplitEval)
}

// ParseTextPattern splits an optional "#train" or "#eval" suffix off a text pattern, as in
// `${GOROOT}/src/**/*.go#eval`.
func ParseTextPattern(p string) (pattern string, split Split) {
	switch {
	case strings.HasSuffix(p, "#train"):
		return strings.TrimSuffix(p, "#train"), SplitTrain
	case strings.HasSuffix(p, "#eval"):
		return strings.TrimSuffix(p, "#eval"), SplitEval
	}
	return p, SplitAll
}

// SelectText returns the non-empty files a text pattern (with optional #train/#eval
// suffix) selects, in path order: the documents both training and packing read. A pattern
// that selects none is a user error naming it, the same for `herd train` and `herd data
// pack`.
func SelectText(pattern string) ([]File, error) {
	glob, split := ParseTextPattern(pattern)
	all, err := Glob(glob)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, f := range all {
		if f.Size > 0 && split.keep(f.Rel) {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil, usererr.New(pattern, "selects no non-empty file")
	}
	return files, nil
}

// Corpus is a set of text documents held in memory as one byte stream.
type Corpus struct {
	Files  []File
	Bytes  []byte  // all documents, concatenated in file order
	Starts []int64 // [len(Files)+1] document d is Bytes[Starts[d]:Starts[d+1]]
	Hash   string  // sha256 over each document's length and sha256, in order
}

// ReadCorpus reads the files SelectText selects, in parallel, into one buffer. Empty files
// are skipped: they hold no tokens.
func ReadCorpus(pattern string) (*Corpus, error) {
	files, err := SelectText(pattern)
	if err != nil {
		return nil, err
	}
	c := &Corpus{Files: files, Starts: []int64{0}}
	for _, f := range files {
		c.Starts = append(c.Starts, c.Starts[len(c.Starts)-1]+f.Size)
	}
	c.Bytes = make([]byte, c.Starts[len(c.Files)])
	sums := make([][sha256.Size]byte, len(c.Files))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, f := range c.Files {
		g.Go(func() error {
			dst := c.Bytes[c.Starts[i]:c.Starts[i+1]]
			if err := readExactly(f.Path, dst); err != nil {
				return err
			}
			sums[i] = sha256.Sum256(dst)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	h := sha256.New()
	var n [8]byte
	for i, s := range sums {
		binary.LittleEndian.PutUint64(n[:], uint64(c.Files[i].Size))
		h.Write(n[:])
		h.Write(s[:])
	}
	c.Hash = hex.EncodeToString(h.Sum(nil))
	return c, nil
}

// readExactly fills dst with the file's bytes; a file that changed size since it was
// listed is a user error rather than a silently different corpus.
func readExactly(name string, dst []byte) error {
	f, err := os.Open(name)
	if err != nil {
		return usererr.New(name, "cannot read: %v", err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, dst); err != nil {
		return usererr.New(name, "changed while being read (%v); read it again", err)
	}
	if n, _ := f.Read(make([]byte, 1)); n != 0 {
		return usererr.New(name, "grew while being read; read it again")
	}
	return nil
}

// Rows is the number of rows of L tokens the corpus packs into, the last one padded.
func (c *Corpus) Rows(L int) int64 { return (int64(len(c.Bytes)) + int64(L) - 1) / int64(L) }

// Row cuts row i of L tokens into r, reusing r's buffers.
func (c *Corpus) Row(i int64, L int, r *Row) {
	lo := i * int64(L)
	hi := min(lo+int64(L), int64(len(c.Bytes)))
	r.Tokens = resize(r.Tokens, L)
	for t, v := range c.Bytes[lo:hi] {
		r.Tokens[t] = int32(v)
	}
	clear(r.Tokens[hi-lo:])
	r.Docs, r.NoLoss, r.Images, r.Pixels = r.Docs[:0], r.NoLoss[:0], r.Images[:0], r.Pixels[:0]
	// the document holding byte lo, then every document that starts before hi
	d := sort.Search(len(c.Starts), func(k int) bool { return c.Starts[k] > lo }) - 1
	for at := lo; at < hi; d++ {
		end := min(c.Starts[d+1], hi)
		r.Docs = append(r.Docs, int32(end-at))
		at = end
	}
	if pad := int64(L) - (hi - lo); pad > 0 {
		r.Docs = append(r.Docs, int32(pad))
		r.NoLoss = append(r.NoLoss, int32(hi-lo), int32(L))
	}
}

// corpusRows reads a Corpus in rows of L tokens, as a RowReader.
type corpusRows struct {
	c *Corpus
	L int
}

func (c corpusRows) Row(i int64, r *Row) error {
	c.c.Row(i, c.L, r)
	return nil
}

// OpenText reads the text files pattern selects (see ReadCorpus) and serves them as rows of
// seqLen+1 byte tokens to rank of world, with global and micro batch sizes as in the config,
// in the order seed draws.
func OpenText(pattern string, seqLen, globalBatch, microBatch, rank, world int, seed uint64) (*Stream, error) {
	if seqLen <= 0 {
		return nil, usererr.New("model.seq_len", "must be a positive integer, got %d", seqLen)
	}
	c, err := ReadCorpus(pattern)
	if err != nil {
		return nil, err
	}
	return NewTextStream(c, seqLen, globalBatch, microBatch, rank, world, seed)
}

// NewTextStream serves an already read corpus, so that several ranks can share one copy in
// memory.
func NewTextStream(c *Corpus, seqLen, globalBatch, microBatch, rank, world int, seed uint64) (*Stream, error) {
	info := Info{Rows: c.Rows(seqLen + 1), SeqLen: seqLen, Vocab: 256, Tokens: int64(len(c.Bytes)),
		Docs: int64(len(c.Files)), Tokenizer: "byte",
		// the order depends on how the bytes are cut, so the identity includes the row length
		Hash: fmt.Sprintf("text-L%d-%s", seqLen+1, c.Hash)}
	return NewStream(corpusRows{c, seqLen + 1}, info, globalBatch, microBatch, rank, world, seed)
}

// Info describes a Source's dataset, for progress displays and epoch arithmetic.
type Info struct {
	Rows      int64  // packed sequences per epoch
	SeqLen    int    // T; each row holds T+1 tokens
	Vocab     int    // token ids are in [0, Vocab)
	Tokens    int64  // tokens before padding (bytes, for the byte tokenizer)
	Docs      int64  // documents
	Hash      string // dataset identity, as in State.Hash
	Tokenizer string // tokenizer id, e.g. "byte" or "o200k_base"
}
