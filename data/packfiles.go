package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow/memory"

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
}

// Pack tokenizes the documents read emits and writes them as a dataset. The output is the
// same for the same input and options, whatever the number of threads.
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
	m := Manifest{SeqLen: o.SeqLen, Tokenizer: tok.Name(), VocabSize: tok.Vocab(), Patch: o.Patch, Channels: o.Channels,
		BatchRows: o.BatchRows, Special: map[string]int32{"pad": pad}}
	if o.Patch > 0 {
		m.Special["image"] = pad
	}
	w, err := NewShardWriter(o.Out, m, o.ShardRows, o.Mem)
	if err != nil {
		return nil, err
	}
	pk := &Packer{L: o.SeqLen + 1, Pad: pad, Emit: w.Write}
	if err := PackStream(read, tok, o.Patch, pad, pk, w.Count); err != nil {
		w.Abort()
		return nil, err
	}
	return w.Close()
}

// TextFiles reads each file pattern selects (with an optional #train or #eval suffix, see
// ParseTextPattern) as one document, in path order.
func TextFiles(pattern string, progress func(int64)) func(emit func(*RawDoc) error) error {
	return func(emit func(*RawDoc) error) error {
		glob, split := ParseTextPattern(pattern)
		files, err := Glob(glob)
		if err != nil {
			return err
		}
		kept := 0
		for _, f := range files {
			if !split.keep(f.Rel) {
				continue
			}
			kept++
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
		if kept == 0 {
			return usererr.New(pattern, "selects no file")
		}
		return nil
	}
}

// JSONLFiles reads one document per line of each file pattern selects: the string value
// of field. A line that is not a JSON object with that string field is a user error
// naming file and line.
func JSONLFiles(pattern, field string, progress func(int64)) func(emit func(*RawDoc) error) error {
	return func(emit func(*RawDoc) error) error {
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
	}
}

func readJSONL(name, field string, progress func(int64), emit func(*RawDoc) error) error {
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
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var rec map[string]json.RawMessage
		var text string
		where := fmt.Sprintf("%s:%d", name, line)
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return usererr.New(where, "not a JSON object: %v", err)
		}
		raw, ok := rec[field]
		if !ok || json.Unmarshal(raw, &text) != nil {
			return usererr.New(where, "has no string field %q; name the text field with --field", field)
		}
		if err := emit(&RawDoc{Where: where, Text: []byte(text)}); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return usererr.New(name, "cannot read: %v", err)
	}
	return nil
}
