package data

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/herdml/herd/internal/usererr"
)

const testT = 63

// packGo packs the test slice of Go sources into small shards (several shards, partial
// record batches), checking that the writer frees all it allocates.
func packGo(t testing.TB, dir string) *Manifest {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	m, err := Pack(TextFiles(goSrc, nil), PackOptions{Out: dir, SeqLen: testT, ShardRows: 300, BatchRows: 64, Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	mem.AssertSize(t, 0)
	return m
}

func sameRow(a, b *Row) bool {
	return slices.Equal(a.Tokens, b.Tokens) && slices.Equal(a.Docs, b.Docs) && slices.Equal(a.NoLoss, b.NoLoss) &&
		slices.Equal(a.Images, b.Images) && string(a.Pixels) == string(b.Pixels)
}

func TestShardsHoldTheTextSourceRows(t *testing.T) {
	dir := t.TempDir()
	m := packGo(t, dir)
	c, err := ReadCorpus(goSrc)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Shards) < 2 || m.Rows != c.Rows(testT+1) || m.Tokens != int64(len(c.Bytes)) || m.Docs != int64(len(c.Files)) {
		t.Fatalf("manifest %d shards, %d rows, %d tokens, %d docs; corpus %d rows, %d bytes, %d files",
			len(m.Shards), m.Rows, m.Tokens, m.Docs, c.Rows(testT+1), len(c.Bytes), len(c.Files))
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	sh, err := OpenShards(filepath.Join(dir, ManifestName), mem)
	if err != nil {
		t.Fatal(err)
	}
	var want, got Row
	for i := int64(0); i < m.Rows; i++ {
		c.Row(i, testT+1, &want)
		if err := sh.Row(i, &got); err != nil {
			t.Fatal(err)
		}
		if !sameRow(&want, &got) {
			t.Fatalf("row %d: shards hold %+v, text source %+v", i, got, want)
		}
	}
	sh.Close()
	mem.AssertSize(t, 0)

	// the same order and batches as the text source
	text, err := NewTextStream(c, testT, 8, 4, 0, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	arrow, err := Open(dir, testT, 8, 4, 0, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer arrow.Close()
	var a, b Batch
	for range 10 {
		if err := text.Next(&a); err != nil {
			t.Fatal(err)
		}
		if err := arrow.Next(&b); err != nil {
			t.Fatal(err)
		}
		if !sameBatch(&a, &b) {
			t.Fatal("Arrow stream and text stream differ")
		}
	}
}

func sameBatch(a, b *Batch) bool {
	return a.B == b.B && a.T == b.T && slices.Equal(a.Tokens, b.Tokens) && slices.Equal(a.Targets, b.Targets) &&
		slices.Equal(a.Mask, b.Mask) && slices.Equal(a.Pos, b.Pos) && slices.Equal(a.Doc, b.Doc) &&
		slices.Equal(a.Patches, b.Patches) && slices.Equal(a.PatchAt, b.PatchAt)
}

func TestPackIsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	ma := packGo(t, a)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	mb := packGo(t, b)
	if !slices.Equal(ma.Shards, mb.Shards) || ma.Hash() != mb.Hash() {
		t.Fatalf("packing twice (with %d and 1 threads) gave different shards", runtime.NumCPU())
	}
}

// TestShardStreamResumesExactly reads k batches, saves the state as a checkpoint would,
// closes everything, opens the dataset afresh and restores: the following batches must
// equal an uninterrupted stream's, byte for byte; and ranks of worlds 2 and 4 together
// read what world 1 reads.
func TestShardStreamResumesExactly(t *testing.T) {
	dir := t.TempDir()
	packGo(t, dir)
	manifest := filepath.Join(dir, ManifestName)
	const G = 8
	open := func(M, rank, world int) *Stream {
		s, err := OpenShardStream(manifest, testT, G, M, rank, world, 11)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ref := open(2, 0, 1)
	defer ref.Close()
	var want []Batch
	for range 40 {
		var b Batch
		if err := ref.Next(&b); err != nil {
			t.Fatal(err)
		}
		want = append(want, b)
	}
	for _, k := range []int{4, 17} {
		s := open(2, 0, 1)
		for range k {
			var b Batch
			s.Next(&b)
		}
		saved, _ := json.Marshal(s.State())
		s.Close()
		var st State
		if err := json.Unmarshal(saved, &st); err != nil {
			t.Fatal(err)
		}
		s = open(2, 0, 1)
		if err := s.Restore(st); err != nil {
			t.Fatal(err)
		}
		for i := k; i < len(want); i++ {
			var b Batch
			if err := s.Next(&b); err != nil {
				t.Fatal(err)
			}
			if !sameBatch(&b, &want[i]) {
				t.Fatalf("resumed after %d batches: batch %d differs", k, i)
			}
		}
		s.Close()
	}
	// elastic: one step of world 1 is 4 micro-batches of 2; worlds 2 and 4 read it together
	for _, world := range []int{2, 4} {
		var ranks []*Stream
		for r := range world {
			s := open(2, r, world)
			defer s.Close()
			ranks = append(ranks, s)
		}
		for step := 0; step < 10; step++ {
			var got []int32
			for _, s := range ranks {
				for range s.MicroSteps() {
					var b Batch
					s.Next(&b)
					got = append(got, b.Tokens...)
				}
			}
			var w []int32
			for _, b := range want[step*4 : step*4+4] {
				w = append(w, b.Tokens...)
			}
			if !slices.Equal(got, w) {
				t.Fatalf("world %d step %d: ranks together read other sequences than world 1", world, step)
			}
		}
	}
}

// corrupt packs a fresh dataset, lets change damage it, and returns the error of reading
// every row.
func corrupt(t *testing.T, change func(dir string, m *Manifest)) error {
	t.Helper()
	dir := t.TempDir()
	m := packGo(t, dir)
	change(dir, m)
	return readAll(filepath.Join(dir, ManifestName))
}

func readAll(manifest string) error {
	sh, err := OpenShards(manifest, nil)
	if err != nil {
		return err
	}
	defer sh.Close()
	return sh.Verify(nil)
}

func writeManifest(t testing.TB, dir string, m *Manifest) {
	body, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, ManifestName), body, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBadDataIsAUserErrorNamingTheShard(t *testing.T) {
	shard1 := "shard-00001.arrow"
	for _, tc := range []struct {
		name   string
		change func(dir string, m *Manifest)
		where  string
	}{
		{"truncated", func(dir string, m *Manifest) {
			os.Truncate(filepath.Join(dir, shard1), m.Shards[1].Bytes-100)
		}, shard1},
		{"flipped byte", func(dir string, m *Manifest) {
			p := filepath.Join(dir, shard1)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0x10
			os.WriteFile(p, b, 0o644)
		}, shard1},
		{"missing file", func(dir string, m *Manifest) { os.Remove(filepath.Join(dir, shard1)) }, shard1},
		{"path outside its folder", func(dir string, m *Manifest) {
			m.Shards[1].Path = "../" + shard1
			writeManifest(t, dir, m)
		}, "../" + shard1},
		{"absolute path", func(dir string, m *Manifest) {
			m.Shards[1].Path = filepath.Join(dir, shard1)
			writeManifest(t, dir, m)
		}, "must be relative"},
		{"manifest of another version", func(dir string, m *Manifest) {
			m.Version = 2
			writeManifest(t, dir, m)
		}, "version 2"},
	} {
		err := corrupt(t, tc.change)
		if !usererr.Is(err) || !strings.Contains(err.Error(), tc.where) {
			t.Errorf("%s: error %v, want a user error naming %s", tc.name, err, tc.where)
		}
	}
}

// writeShard writes rows as a one-shard dataset with a schema that change may alter, as
// another tool (or another herd version) might.
func writeShard(t testing.TB, rows []Row, change func(*ShardWriter)) string {
	t.Helper()
	dir := t.TempDir()
	m := Manifest{SeqLen: 4, Tokenizer: "byte", VocabSize: 256, BatchRows: 2, Special: map[string]int32{"pad": 0}}
	w, err := NewShardWriter(dir, m, 100, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(w)
	}
	for i := range rows {
		if err := w.Write(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, ManifestName)
}

func TestBadRowsAndSchemas(t *testing.T) {
	good := Row{Tokens: []int32{1, 2, 3, 4, 5}, Docs: []int32{5}}
	bad := Row{Tokens: []int32{1, 2, 3, 4, 5}, Docs: []int32{2, 2}}
	err := readAll(writeShard(t, []Row{good, good, good, bad}, nil))
	var ue *usererr.Error
	if !errors.As(err, &ue) || !strings.Contains(ue.Where, "shard-00000.arrow row 3") {
		t.Errorf("row with bad segments: error %v, want one naming shard-00000.arrow row 3", err)
	}
	big := Row{Tokens: []int32{1, 2, 300, 4, 5}, Docs: []int32{5}}
	if err := readAll(writeShard(t, []Row{big}, nil)); !usererr.Is(err) || !strings.Contains(err.Error(), "row 0") {
		t.Errorf("token outside the vocabulary: error %v", err)
	}
	v2 := func(w *ShardWriter) {
		md := w.schema.Metadata()
		vals := slices.Clone(md.Values())
		vals[md.FindKey("herd.version")] = "2"
		meta := arrow.NewMetadata(md.Keys(), vals)
		w.schema = arrow.NewSchema(w.schema.Fields(), &meta)
		w.rb.Release()
		w.rb = array.NewRecordBuilder(w.mem, w.schema)
	}
	if err := readAll(writeShard(t, []Row{good}, v2)); !usererr.Is(err) || !strings.Contains(err.Error(), "herd.version is 2") {
		t.Errorf("schema of version 2: error %v", err)
	}
}

// FuzzShardReader feeds damaged shard files to the reader, with a manifest entry that
// matches their size and hash so that the damage reaches the Arrow decoder and the row
// checks. It must return rows or a user error, never panic, hang or exhaust memory.
func FuzzShardReader(f *testing.F) {
	rows := []Row{
		{Tokens: []int32{1, 2, 3, 4, 5}, Docs: []int32{3, 2}},
		{Tokens: []int32{6, 7, 8, 0, 0}, Docs: []int32{3, 2}, NoLoss: []int32{3, 5}},
		{Tokens: []int32{9, 9, 9, 9, 9}, Docs: []int32{5}},
	}
	manifest := writeShard(f, rows, nil)
	var m Manifest
	body, _ := os.ReadFile(manifest)
	json.Unmarshal(body, &m)
	shard, _ := os.ReadFile(filepath.Join(filepath.Dir(manifest), m.Shards[0].Path))
	f.Add(shard)
	f.Add(shard[:len(shard)/2])
	for _, at := range []int{8, 100, len(shard) / 2, len(shard) - 12} {
		b := slices.Clone(shard)
		b[at] ^= 0xff
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sum := sha256.Sum256(data)
		info := ShardInfo{Path: "s.arrow", Rows: m.Rows, Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
		s := &Shards{Manifest: m, mem: memory.DefaultAllocator, start: []int64{0, m.Rows}, shards: make([]*mappedShard, 1)}
		s.Manifest.Shards = []ShardInfo{info}
		sh, err := s.decodeShard("s.arrow", data, info)
		if err == nil {
			s.shards[0] = sh
			err = s.Verify(nil)
			sh.data = nil // not a mapping: Close must not unmap it
			s.Close()
		}
		if err != nil && !usererr.Is(err) {
			t.Fatalf("damaged shard gave an internal error: %v", err)
		}
	})
}

// After a batch, the stream has already loaded what the next one needs, and no more.
func TestPrefetchLoadsTheNextBatchOnly(t *testing.T) {
	dir := t.TempDir()
	packGo(t, dir)
	s, err := Open(dir, testT, 4, 2, 0, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sh := s.rows.(*Shards)
	loaded := func() int {
		n := 0
		for _, m := range sh.shards {
			if m != nil {
				for _, b := range m.batches {
					if b != nil {
						n++
					}
				}
			}
		}
		return n
	}
	var b Batch
	for range 5 {
		if err := s.Next(&b); err != nil {
			t.Fatal(err)
		}
		ahead := *s.sampler
		next := ahead.Next(nil)
		s.wait()
		for _, i := range next {
			k, bi, _, _ := sh.locate(i)
			if sh.shards[k] == nil || sh.shards[k].batches[bi] == nil {
				t.Fatalf("row %d of the next batch is not loaded", i)
			}
		}
	}
	// 5 batches of 2 rows plus the prefetched 2 rows touch at most 12 record batches
	if n := loaded(); n > 12 {
		t.Fatalf("%d record batches loaded after 5 micro-batches of 2 rows", n)
	}
}
