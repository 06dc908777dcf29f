package data

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/herdml/herd/internal/usererr"
)

var docs = []string{"package main\n", "func f() {}\n", "héllo, wörld — ünïcode ✓", "", "x := []int{1, 2, 3}\n"}

func writeParquet(t *testing.T, path string, texts []string, nullAt int) {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "text", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	for i, s := range texts {
		rb.Field(0).(*array.Int64Builder).Append(int64(i))
		if i == nullAt {
			rb.Field(1).AppendNull()
		} else {
			rb.Field(1).(*array.StringBuilder).Append(s)
		}
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	tbl := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
	defer tbl.Release()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pqarrow.WriteTable(tbl, f, 2, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps()); err != nil {
		t.Fatal(err)
	}
}

// JSONL lines and Parquet rows holding the same texts pack into the same shards.
func TestJSONLAndParquetPackTheSameDataset(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for _, d := range docs {
		b, _ := json.Marshal(map[string]any{"text": d, "n": 1})
		lines = append(lines, string(b))
	}
	os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	writeParquet(t, filepath.Join(dir, "a.parquet"), docs, -1)
	o := PackOptions{SeqLen: 15, BatchRows: 2}
	o.Out = filepath.Join(dir, "j")
	mj, err := Pack(JSONLFiles(filepath.Join(dir, "*.jsonl"), "text", nil), o)
	if err != nil {
		t.Fatal(err)
	}
	o.Out = filepath.Join(dir, "p")
	mp, err := Pack(ParquetFiles(filepath.Join(dir, "*.parquet"), "text", nil), o)
	if err != nil {
		t.Fatal(err)
	}
	if mj.Hash() != mp.Hash() || mj.Docs != 4 || mj.Tokens != int64(len(strings.Join(docs, ""))) {
		t.Fatalf("JSONL %+v and Parquet %+v differ or miscount", mj, mp)
	}
	// null rows are skipped
	writeParquet(t, filepath.Join(dir, "n.parquet"), []string{"abc", "", "def"}, 1)
	o.Out = filepath.Join(dir, "n")
	mn, err := Pack(ParquetFiles(filepath.Join(dir, "n.parquet"), "text", nil), o)
	if err != nil || mn.Docs != 2 || mn.Tokens != 6 {
		t.Fatalf("null row: %+v, %v", mn, err)
	}
}

func TestBadInputsNameTheirPlace(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.jsonl"), []byte("{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n"), 0o644)
	writeParquet(t, filepath.Join(dir, "a.parquet"), docs, -1)
	os.WriteFile(filepath.Join(dir, "fake.parquet"), []byte("not parquet"), 0o644)
	for _, tc := range []struct {
		read  func(func(*RawDoc) error) error
		where string
	}{
		{JSONLFiles(filepath.Join(dir, "bad.jsonl"), "text", nil), "bad.jsonl:2"},
		{ParquetFiles(filepath.Join(dir, "a.parquet"), "body", nil), `no column "body"`},
		{ParquetFiles(filepath.Join(dir, "a.parquet"), "id", nil), `column "id" holds int64`},
		{ParquetFiles(filepath.Join(dir, "fake.parquet"), "text", nil), "fake.parquet"},
	} {
		_, err := Pack(tc.read, PackOptions{Out: filepath.Join(dir, "out"), SeqLen: 8})
		if !usererr.Is(err) || !strings.Contains(err.Error(), tc.where) {
			t.Errorf("error %v, want a user error naming %s", err, tc.where)
		}
		if _, err := os.Stat(filepath.Join(dir, "out", ManifestName)); err == nil {
			t.Fatalf("a failed pack wrote a manifest")
		}
	}
}

// The BPE tokenizer works offline and its rows decode back to the documents.
func TestPackWithO200k(t *testing.T) {
	dir := t.TempDir()
	for i, d := range docs {
		os.WriteFile(filepath.Join(dir, string(rune('a'+i))+".txt"), []byte(d), 0o644)
	}
	m, err := Pack(TextFiles(filepath.Join(dir, "*.txt"), nil), PackOptions{Out: filepath.Join(dir, "out"), SeqLen: 7, Tokenizer: "o200k_base"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Tokenizer != "o200k_base" || m.VocabSize != 200019 || m.Tokens >= int64(len(strings.Join(docs, ""))) {
		t.Fatalf("manifest %+v: want o200k_base with fewer tokens than bytes", m)
	}
	sh, err := OpenShards(filepath.Join(dir, "out", ManifestName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	tok, _ := NewTokenizer("o200k_base")
	var all []int32
	var r Row
	for i := int64(0); i < m.Rows; i++ {
		sh.Row(i, &r)
		n := len(r.Tokens)
		if len(r.NoLoss) > 0 {
			n = int(r.NoLoss[0])
		}
		all = append(all, r.Tokens[:n]...)
	}
	if got := tok.Decode(all); got != strings.Join(docs, "") {
		t.Fatalf("decoded %q", got)
	}
}
