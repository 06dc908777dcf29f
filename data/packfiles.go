package data

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/herdml/herd/internal/outdir"
	"github.com/herdml/herd/internal/usererr"
)

// PackOptions says how to pack a dataset.
type PackOptions struct {
	Out       string // output folder: manifest.json and shard-NNNNN.arrow files
	SeqLen    int    // T; rows hold T+1 tokens
	Tokenizer string // see Tokenizers
	Patch     int    // image patch side in pixels (image inputs only)
	Channels  int    // colour channels of the images (image inputs only)
	ShardRows int    // rows per shard; 0 = 65536
	BatchRows int    // rows per Arrow record batch; 0 = 1024
	Mem       memory.Allocator
	Progress  func(bytes int64) // called as input is read; may be nil
	// Ctx, if set, stops the pack when cancelled (Ctrl-C), which then fails like any other
	// error: what it wrote is removed.
	Ctx context.Context
}

// Pack tokenizes the documents read emits and writes them as a dataset. The output is the
// same for the same input and options, whatever the number of threads. The output folder
// is checked for writing before any input is read, and a pack that fails removes what it
// wrote (see ShardWriter.Abort): a folder holds a whole dataset or nothing of this pack.
func Pack(read func(emit func(*RawDoc) error) error, o PackOptions) (*Manifest, error) {
	tok, err := NewTokenizer(o.Tokenizer)
	if err != nil {
		return nil, err
	}
	if o.SeqLen <= 0 {
		return nil, usererr.New("--seq-len", "must be a positive integer, got %d", o.SeqLen)
	}
	if o.Patch < 0 || o.Channels < 0 || (o.Patch > 0) != (o.Channels > 0) {
		return nil, usererr.New("--patch", "patch %d and channels %d must both be positive for images, or both 0", o.Patch, o.Channels)
	}
	if err := outdir.Check(o.Out, "the dataset (--out)"); err != nil {
		return nil, err
	}
	if o.ShardRows == 0 {
		o.ShardRows = 65536
	}
	if o.BatchRows == 0 {
		o.BatchRows = 1024
	}
	if o.Mem == nil {
		o.Mem = memory.DefaultAllocator
	}
	const pad = 0
	hdr := Manifest{SeqLen: o.SeqLen, Tokenizer: tok.Name(), VocabSize: tok.Vocab(), Patch: o.Patch, Channels: o.Channels,
		BatchRows: o.BatchRows, Special: map[string]int32{"pad": pad}}
	if o.Patch > 0 {
		hdr.Special["image"] = pad
	}
	w, err := NewShardWriter(o.Out, hdr, o.ShardRows, o.Mem)
	if err != nil {
		return nil, err
	}
	var copied []string
	abort := func(err error) (*Manifest, error) {
		w.Abort()
		for _, p := range copied {
			os.Remove(p)
		}
		return nil, err
	}
	if _, ok := tok.(*hfTokenizer); ok {
		if copied, err = CopyHF(o.Tokenizer, o.Out); err != nil {
			return abort(err)
		}
	}
	pk := &Packer{L: o.SeqLen + 1, Pad: pad, Emit: w.Write}
	if err := PackStream(interruptible(o.Ctx, read), tok, o.Patch, pad, pk, w.Count); err != nil {
		return abort(err)
	}
	if w.m.Docs == 0 { // inputs had documents (see nonEmpty), and all were dropped
		return abort(usererr.New("herd data pack", "no document is left to pack: every one was dropped (--on-long drop); raise --seq-len"))
	}
	m, err := w.Close() // removes what it wrote on failure
	if err != nil {
		for _, p := range copied {
			os.Remove(p)
		}
	}
	return m, err
}

// interruptible stops read at the next document once ctx is cancelled.
func interruptible(ctx context.Context, read func(emit func(*RawDoc) error) error) func(emit func(*RawDoc) error) error {
	if ctx == nil {
		return read
	}
	return func(emit func(*RawDoc) error) error {
		return read(func(d *RawDoc) error {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("packing stopped: %w", err)
			}
			return emit(d)
		})
	}
}

// nonEmpty passes read's documents on and makes an input without a single non-empty one
// a user error naming pattern, as SelectText does for text files: a dataset of no rows is
// of no use, and `herd data verify` rejects it.
func nonEmpty(pattern string, read func(emit func(*RawDoc) error) error) func(emit func(*RawDoc) error) error {
	return func(emit func(*RawDoc) error) error {
		docs := 0
		err := read(func(d *RawDoc) error {
			if len(d.Text) > 0 || d.Image != nil || d.Tokenize != nil {
				docs++
			}
			return emit(d)
		})
		if err == nil && docs == 0 {
			return usererr.New(pattern, "selects no non-empty document")
		}
		return err
	}
}

// TextFiles reads each non-empty file SelectText selects (pattern may end in #train or
// #eval) as one document, in path order.
func TextFiles(pattern string, progress func(int64)) func(emit func(*RawDoc) error) error {
	return func(emit func(*RawDoc) error) error {
		files, err := SelectText(pattern)
		if err != nil {
			return err
		}
		for _, f := range files {
			body, err := os.ReadFile(f.Path)
			if err != nil {
				return usererr.New(f.Path, "cannot read: %v", err)
			}
			if progress != nil {
				progress(int64(len(body)))
			}
			if err := emit(&RawDoc{Where: f.Path, Text: body}); err != nil {
				return err
			}
		}
		return nil
	}
}

// JSONLFiles reads one document per line of each file pattern selects: the string value
// of field (see JSONLText). An input without a non-empty document is a user error.
func JSONLFiles(pattern, field string, progress func(int64)) func(emit func(*RawDoc) error) error {
	return nonEmpty(pattern, func(emit func(*RawDoc) error) error {
		files, err := Glob(pattern)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := readJSONL(f.Path, field, progress, emit); err != nil {
				return err
			}
		}
		return nil
	})
}

func readJSONL(name, field string, progress func(int64), emit func(*RawDoc) error) error {
	return eachLine(name, progress, func(where string, line []byte) error {
		text, ok, err := JSONLText(where, line, field)
		if err != nil || !ok {
			return err
		}
		return emit(&RawDoc{Where: where, Text: text})
	})
}

// eachLine calls fn with each line of the file name (without its newline) and where it
// is, "file:line", reporting each line's bytes to progress if not nil: the JSONL readers'
// loop. A file that cannot be read is a user error naming it.
func eachLine(name string, progress func(int64), fn func(where string, line []byte) error) error {
	fh, err := os.Open(name)
	if err != nil {
		return usererr.New(name, "cannot read: %v", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for line := 1; sc.Scan(); line++ {
		if progress != nil {
			progress(int64(len(sc.Bytes()) + 1))
		}
		if err := fn(fmt.Sprintf("%s:%d", name, line), sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return usererr.New(name, "cannot read: %v", err)
	}
	return nil
}

// JSONLText parses one line of a JSONL input: a JSON object whose string field holds the
// document. A blank line, or a null field (as Parquet's null values), is skipped (ok
// false); anything else that is not such an object is a user error located at where
// (file:line).
func JSONLText(where string, line []byte, field string) (text []byte, ok bool, err error) {
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, false, nil
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(line, &rec); err != nil {
		return nil, false, usererr.New(where, "not a JSON object: %v", err)
	}
	var s string
	raw, found := rec[field]
	if found && string(raw) == "null" {
		return nil, false, nil
	}
	if !found || json.Unmarshal(raw, &s) != nil {
		return nil, false, usererr.New(where, "has no string field %q; name the text field with --field", field)
	}
	return []byte(s), true, nil
}
