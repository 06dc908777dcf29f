package data

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/herdml/herd/internal/outdir"
)

// The shard format, version 1 (docs/data.md is the reference for writers in other
// languages). A dataset is a folder with manifest.json and Arrow IPC files ("shards"). One
// Arrow row is one packed Row of L = seq_len+1 tokens; the columns are Row's fields:
//
//	tokens   list<int32>  [L] token ids
//	docs     list<int32>  document segment lengths, summing to L
//	no_loss  list<int32>  [start, end) pairs of token positions never trained as targets
//	images   list<int32>  [start, patches) pairs: image patches at those token positions
//	pixels   binary       the images' pixels, uint8, patch-major, row-major in a patch
//
// The schema metadata repeats the manifest's header, so a shard describes itself.
const (
	FormatName    = "herd-tokens"
	FormatVersion = 1
	ManifestName  = "manifest.json"
)

// Manifest describes a dataset: its shape and tokenizer, and each shard's size and hash,
// so that planning an epoch never opens a shard and a global row maps to (shard, record
// batch, row) by arithmetic.
type Manifest struct {
	Format    string           `json:"format"`         // always "herd-tokens"
	Version   int              `json:"version"`        // FormatVersion
	SeqLen    int              `json:"seq_len"`        // T; every row holds T+1 tokens
	Tokenizer string           `json:"tokenizer"`      // "byte" or a tiktoken encoding such as "o200k_base"
	VocabSize int              `json:"vocab_size"`     // token ids are in [0, vocab_size)
	Special   map[string]int32 `json:"special_tokens"` // e.g. {"pad": 0, "image": 0}
	Patch     int              `json:"patch"`          // image patch side p in pixels; 0 = text only
	Channels  int              `json:"channels"`       // colour channels C; a patch holds p*p*C pixels
	BatchRows int              `json:"batch_rows"`     // rows per Arrow record batch (the last of a shard may hold fewer)
	Rows      int64            `json:"rows"`           // rows in all shards
	Tokens    int64            `json:"tokens"`         // tokens before padding
	Docs      int64            `json:"docs"`           // documents packed
	Shards    []ShardInfo      `json:"shards"`
}

// ShardInfo is one shard's entry in the manifest.
type ShardInfo struct {
	Path   string `json:"path"`   // relative to the manifest's folder, slash-separated, never escaping it
	Rows   int64  `json:"rows"`   // rows in this shard
	Bytes  int64  `json:"bytes"`  // file size
	SHA256 string `json:"sha256"` // hex sha256 of the file
}

// Hash identifies the dataset for State.Hash: a digest of the manifest's shape and of every
// shard's hash, so that a changed shard or a different packing is a different dataset.
func (m *Manifest) Hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s/%d/L%d/%s/%d/%d/%d/%d\n", m.Format, m.Version, m.SeqLen+1, m.Tokenizer, m.VocabSize, m.Patch, m.Channels, m.BatchRows)
	for _, s := range m.Shards {
		fmt.Fprintf(h, "%d %s\n", s.Rows, s.SHA256)
	}
	return "arrow-" + hex.EncodeToString(h.Sum(nil))
}

// PatchPixels is P, the pixels of one image patch.
func (m *Manifest) PatchPixels() int { return m.Patch * m.Patch * m.Channels }

// Schema is the Arrow schema of the manifest's shards, metadata included.
func (m *Manifest) Schema() *arrow.Schema {
	special, _ := json.Marshal(m.Special) // a map of strings to integers always encodes
	md := arrow.NewMetadata(
		[]string{"herd.format", "herd.version", "herd.seq_len", "herd.tokenizer", "herd.vocab_size",
			"herd.special_tokens", "herd.patch", "herd.channels"},
		[]string{m.Format, strconv.Itoa(m.Version), strconv.Itoa(m.SeqLen), m.Tokenizer, strconv.Itoa(m.VocabSize),
			string(special), strconv.Itoa(m.Patch), strconv.Itoa(m.Channels)})
	i32 := arrow.ListOf(arrow.PrimitiveTypes.Int32)
	return arrow.NewSchema([]arrow.Field{
		{Name: "tokens", Type: i32},
		{Name: "docs", Type: i32},
		{Name: "no_loss", Type: i32},
		{Name: "images", Type: i32},
		{Name: "pixels", Type: arrow.BinaryTypes.Binary},
	}, &md)
}

// ShardWriter writes Rows into shards of at most shardRows rows and, on Close, the
// manifest. Shards are written under temporary names and renamed only by Close, and the
// manifest comes last, so a folder with a manifest always holds a whole dataset, and a
// pack that fails before Close leaves a dataset that was in the folder intact. Files are
// created with mode 0666 less the umask, as other tools do, so that workers running as
// other users can read them.
type ShardWriter struct {
	dir       string
	created   string   // the topmost folder NewShardWriter made, "" if dir existed
	written   []string // files this writer made in dir, for Abort
	m         Manifest
	shardRows int64
	mem       memory.Allocator
	schema    *arrow.Schema

	rb      *array.RecordBuilder
	inBatch int
	f       *os.File
	sum     hash.Hash
	size    countWriter
	w       *ipc.FileWriter
	rows    int64 // rows in the open shard
	done    bool  // Close or Abort ran
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// NewShardWriter starts a dataset in dir (created if needed) with header m: Format,
// Version, sizes and counts are filled in by the writer.
func NewShardWriter(dir string, m Manifest, shardRows int, mem memory.Allocator) (*ShardWriter, error) {
	if shardRows <= 0 || m.BatchRows <= 0 || m.SeqLen <= 0 {
		return nil, fmt.Errorf("shard writer: rows per shard %d, batch %d and seq_len %d must be positive", shardRows, m.BatchRows, m.SeqLen)
	}
	created, err := outdir.Make(dir)
	if err != nil {
		return nil, fmt.Errorf("shard writer: %w", err)
	}
	m.Format, m.Version, m.Shards, m.Rows = FormatName, FormatVersion, nil, 0
	w := &ShardWriter{dir: dir, created: created, m: m, shardRows: int64(shardRows), mem: mem, schema: m.Schema()}
	w.rb = array.NewRecordBuilder(mem, w.schema)
	return w, nil
}

// create makes (or truncates) the file name in the dataset's folder, with mode 0666 less
// the umask, and records it for Abort.
func (w *ShardWriter) create(name string) (*os.File, error) {
	path := filepath.Join(w.dir, name)
	w.written = append(w.written, path)
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Write appends one row. Its documents' and tokens' counts go to the manifest through
// Count.
func (w *ShardWriter) Write(r *Row) error {
	if len(r.Tokens) != w.m.SeqLen+1 {
		return fmt.Errorf("shard writer: row of %d tokens, want %d", len(r.Tokens), w.m.SeqLen+1)
	}
	for i, col := range [][]int32{r.Tokens, r.Docs, r.NoLoss, r.Images} {
		lb := w.rb.Field(i).(*array.ListBuilder)
		lb.Append(true)
		lb.ValueBuilder().(*array.Int32Builder).AppendValues(col, nil)
	}
	w.rb.Field(4).(*array.BinaryBuilder).Append(r.Pixels)
	w.inBatch++
	w.rows++
	w.m.Rows++
	if w.inBatch == w.m.BatchRows || w.rows == w.shardRows {
		return w.flush()
	}
	return nil
}

// Count adds to the manifest's token and document totals.
func (w *ShardWriter) Count(tokens, docs int64) { w.m.Tokens += tokens; w.m.Docs += docs }

func (w *ShardWriter) flush() error {
	if w.inBatch == 0 {
		return nil
	}
	if w.w == nil {
		f, err := w.create(tmpShard(len(w.m.Shards)))
		if err != nil {
			return err
		}
		w.f, w.sum, w.size = f, sha256.New(), countWriter{}
		w.w, err = ipc.NewFileWriter(io.MultiWriter(f, w.sum, &w.size), ipc.WithSchema(w.schema), ipc.WithAllocator(w.mem))
		if err != nil {
			return err
		}
	}
	rec := w.rb.NewRecordBatch()
	defer rec.Release()
	w.inBatch = 0
	if err := w.w.Write(rec); err != nil {
		return fmt.Errorf("writing shard: %w", err)
	}
	if w.rows == w.shardRows {
		return w.closeShard()
	}
	return nil
}

func (w *ShardWriter) closeShard() error {
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("writing shard: %w", err)
	}
	w.w = nil
	if err := w.f.Sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	name := fmt.Sprintf("shard-%05d.arrow", len(w.m.Shards))
	w.m.Shards = append(w.m.Shards, ShardInfo{Path: name, Rows: w.rows, Bytes: w.size.n, SHA256: hex.EncodeToString(w.sum.Sum(nil))})
	w.rows = 0
	return nil
}

// tmpShard names shard i until Close renames it.
func tmpShard(i int) string { return fmt.Sprintf(".shard-%05d.arrow.tmp", i) }

// Close writes the last shard and the manifest, and returns the manifest. A dataset of
// no rows is an error: there is nothing to train on. On any error Close aborts.
func (w *ShardWriter) Close() (*Manifest, error) {
	m, err := w.close()
	if err != nil {
		w.Abort()
		return nil, err
	}
	w.done = true
	w.rb.Release()
	return m, nil
}

func (w *ShardWriter) close() (*Manifest, error) {
	if err := w.flush(); err != nil {
		return nil, err
	}
	if w.w != nil {
		if err := w.closeShard(); err != nil {
			return nil, err
		}
	}
	if w.m.Rows == 0 {
		return nil, fmt.Errorf("shard writer: no rows to write")
	}
	for i, sh := range w.m.Shards {
		final := filepath.Join(w.dir, sh.Path)
		w.written = append(w.written, final)
		if err := os.Rename(filepath.Join(w.dir, tmpShard(i)), final); err != nil {
			return nil, err
		}
	}
	body, err := json.MarshalIndent(&w.m, "", "  ")
	if err != nil {
		return nil, err
	}
	f, err := w.create(".manifest.json.tmp")
	if err != nil {
		return nil, err
	}
	_, err = f.Write(append(body, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Rename(f.Name(), filepath.Join(w.dir, ManifestName)); err != nil {
		return nil, err
	}
	return &w.m, nil
}

// Abort undoes the writer, after an error: it removes the folder if NewShardWriter made
// it, else only the files this writer made in it, so that files that were there before
// are never touched.
func (w *ShardWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.rb.Release()
	if w.f != nil {
		w.f.Close() // an error closing a file about to be removed tells nothing
	}
	if w.created != "" {
		os.RemoveAll(w.created)
		return
	}
	for _, p := range w.written {
		os.Remove(p)
	}
}
