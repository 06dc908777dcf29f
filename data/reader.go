package data

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/herdml/herd/internal/usererr"
)

// Shards reads a dataset of Arrow shards through memory mappings: a Row's slices point
// into the mapped files, nothing is copied until the batch is filled. Each shard is mapped
// on first use, its sha256 checked against the manifest, and each record batch validated
// once, so that a corrupt file is an error naming the shard and row, never a panic or a
// silently wrong batch. Safe for concurrent use.
type Shards struct {
	Manifest Manifest
	dir      string
	start    []int64 // [len(shards)+1] first global row of each shard
	mem      memory.Allocator

	mu     sync.Mutex
	shards []*mappedShard
	remote *remote // set when the shards are read over Arrow Flight
}

type mappedShard struct {
	name    string
	data    []byte
	fr      *ipc.FileReader
	batches []*shardBatch
}

// shardBatch is one validated record batch, its columns as flat slices into the mapping.
type shardBatch struct {
	rec                          arrow.RecordBatch
	tokens, docs, noLoss, images listCol
	pixels                       []byte
	pixelOffs                    []int32
}

type listCol struct {
	offs []int32
	vals []int32
}

func (c listCol) at(i int) []int32 { return c.vals[c.offs[i]:c.offs[i+1]] }

// OpenShards reads and checks a manifest. Shards are opened when first read; mem (nil for
// the default) backs what the Arrow reader allocates.
func OpenShards(manifestPath string, mem memory.Allocator) (*Shards, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	body, err := os.ReadFile(manifestPath)
	if err != nil {
		return nil, usererr.New(manifestPath, "cannot read the dataset manifest: %v", err)
	}
	s := &Shards{dir: filepath.Dir(manifestPath), mem: mem}
	if s.Manifest, err = ParseManifest(manifestPath, body); err != nil {
		return nil, err
	}
	s.start = []int64{0}
	for _, sh := range s.Manifest.Shards {
		p := filepath.Join(s.dir, filepath.FromSlash(sh.Path))
		fi, err := os.Stat(p)
		if err != nil {
			return nil, usererr.New(p, "shard listed in %s is missing: %v", manifestPath, err)
		}
		if fi.Size() != sh.Bytes {
			return nil, usererr.New(p, "is %d bytes but the manifest says %d: the shard is truncated or was replaced; pack the dataset again", fi.Size(), sh.Bytes)
		}
		s.start = append(s.start, s.start[len(s.start)-1]+sh.Rows)
	}
	s.shards = make([]*mappedShard, len(s.Manifest.Shards))
	return s, nil
}

// ParseManifest decodes and checks a dataset manifest (strictly: unknown keys are
// errors). Anything that is not a valid manifest is a user error located at where.
func ParseManifest(where string, body []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, usererr.New(where, "not a herd dataset manifest: %v", err)
	}
	if err := m.check(where); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// check validates the manifest's header and shard list.
func (m *Manifest) check(where string) error {
	switch {
	case m.Format != FormatName:
		return usererr.New(where, "format %q, want %q", m.Format, FormatName)
	case m.Version != FormatVersion:
		return usererr.New(where, "format version %d; this herd reads version %d: pack the data again with this herd", m.Version, FormatVersion)
	case m.SeqLen <= 0 || m.VocabSize <= 0 || m.BatchRows <= 0 || m.Patch < 0 || m.Channels < 0:
		return usererr.New(where, "seq_len, vocab_size and batch_rows must be positive, patch and channels not negative")
	case len(m.Shards) == 0:
		return usererr.New(where, "lists no shards")
	}
	rows := int64(0)
	for i, sh := range m.Shards {
		if !filepath.IsLocal(filepath.FromSlash(sh.Path)) {
			return usererr.New(where, "shards[%d].path %q must be relative and stay inside the manifest's folder", i, sh.Path)
		}
		if sh.Rows <= 0 || sh.Bytes <= 0 || len(sh.SHA256) != 2*sha256.Size {
			return usererr.New(where, "shards[%d] (%s) needs positive rows and bytes and a hex sha256", i, sh.Path)
		}
		if sh.Rows > math.MaxInt64-rows { // the sum would wrap around, and could match rows
			return usererr.New(where, "shards[%d] (%s): the shards' rows add up to more than %d", i, sh.Path, int64(math.MaxInt64))
		}
		rows += sh.Rows
	}
	if rows != m.Rows {
		return usererr.New(where, "rows is %d but the shards hold %d", m.Rows, rows)
	}
	return nil
}

// Info describes the dataset as a Source does.
func (s *Shards) Info() Info {
	m := &s.Manifest
	return Info{Rows: m.Rows, SeqLen: m.SeqLen, Vocab: m.VocabSize, Tokens: m.Tokens, Docs: m.Docs,
		Hash: m.Hash(), Tokenizer: m.Tokenizer}
}

// Warm loads the record batches holding rows, so that reading them later does not wait.
func (s *Shards) Warm(rows []int64) {
	for _, i := range rows {
		if k, bi, _, ok := s.locate(i); ok {
			s.batch(k, bi) // an error here is met again, and reported, by Row
		}
	}
}

// locate maps global row i to (shard, record batch, row in the batch).
func (s *Shards) locate(i int64) (k, bi, row int, ok bool) {
	if i < 0 || i >= s.Manifest.Rows {
		return 0, 0, 0, false
	}
	k = sort.Search(len(s.start)-1, func(k int) bool { return s.start[k+1] > i })
	local := i - s.start[k]
	return k, int(local / int64(s.Manifest.BatchRows)), int(local % int64(s.Manifest.BatchRows)), true
}

// Row points r into global row i.
func (s *Shards) Row(i int64, r *Row) error {
	k, bi, row, ok := s.locate(i)
	if !ok {
		return fmt.Errorf("row %d outside [0, %d)", i, s.Manifest.Rows)
	}
	b, err := s.batch(k, bi)
	if err != nil {
		return err
	}
	r.Tokens, r.Docs, r.NoLoss, r.Images = b.tokens.at(row), b.docs.at(row), b.noLoss.at(row), b.images.at(row)
	r.Pixels = b.pixels[b.pixelOffs[row]:b.pixelOffs[row+1]]
	return nil
}

// batch returns record batch bi of shard k, mapping, verifying and validating on first use.
func (s *Shards) batch(k, bi int) (*shardBatch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := int64(bi * s.Manifest.BatchRows)
	want := min(int64(s.Manifest.BatchRows), s.Manifest.Shards[k].Rows-first)
	if s.remote != nil {
		return s.remote.batch(s, k, bi, first, want)
	}
	sh := s.shards[k]
	if sh == nil {
		var err error
		if sh, err = s.openShard(k); err != nil {
			return nil, err
		}
		s.shards[k] = sh
	}
	if b := sh.batches[bi]; b != nil {
		return b, nil
	}
	b, err := s.loadBatch(sh, bi, first, want)
	if err != nil {
		return nil, err
	}
	sh.batches[bi] = b
	return b, nil
}

func (s *Shards) openShard(k int) (*mappedShard, error) {
	info := s.Manifest.Shards[k]
	name := filepath.Join(s.dir, filepath.FromSlash(info.Path))
	data, err := mapFile(name)
	if err != nil {
		return nil, usererr.New(name, "cannot map shard: %v", err)
	}
	sh, err := s.decodeShard(name, data, info)
	if err != nil {
		unmapFile(data)
	}
	return sh, err
}

// decodeShard checks a shard's bytes against its manifest entry and the format, and opens
// it for reading.
func (s *Shards) decodeShard(name string, data []byte, info ShardInfo) (*mappedShard, error) {
	if int64(len(data)) != info.Bytes {
		return nil, usererr.New(name, "is %d bytes but the manifest says %d: truncated or replaced", len(data), info.Bytes)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != info.SHA256 {
		return nil, usererr.New(name, "sha256 does not match the manifest: the shard is corrupt; pack it again or restore it")
	}
	if err := checkIPC(data); err != nil {
		return nil, usererr.New(name, "not a readable Arrow IPC file: %v", err)
	}
	fr, err := openArrow(data, s.mem)
	if err != nil {
		return nil, usererr.New(name, "not a readable Arrow IPC file: %v", err)
	}
	if err := s.checkSchema(fr.Schema()); err != nil {
		fr.Close()
		return nil, usererr.New(name, "%v", err)
	}
	batches := (info.Rows + int64(s.Manifest.BatchRows) - 1) / int64(s.Manifest.BatchRows)
	if n := fr.NumRecords(); int64(n) != batches {
		fr.Close()
		return nil, usererr.New(name, "holds %d record batches, want %d for %d rows of batch_rows %d", n, batches, info.Rows, s.Manifest.BatchRows)
	}
	return &mappedShard{name: name, data: data, fr: fr, batches: make([]*shardBatch, batches)}, nil
}

// openArrow opens an IPC file in memory, turning the Arrow reader's panics on malformed
// flatbuffers into errors.
func openArrow(data []byte, mem memory.Allocator) (fr *ipc.FileReader, err error) {
	defer func() {
		if p := recover(); p != nil {
			fr, err = nil, fmt.Errorf("malformed file: %v", p)
		}
	}()
	return ipc.NewMappedFileReader(data, ipc.WithAllocator(mem))
}

// checkSchema compares a shard's schema and metadata with the manifest's.
func (s *Shards) checkSchema(got *arrow.Schema) error {
	want := s.Manifest.Schema()
	md := got.Metadata()
	if v := md.FindKey("herd.version"); v < 0 || md.Values()[v] != fmt.Sprint(FormatVersion) {
		ver := "none"
		if v >= 0 {
			ver = md.Values()[v]
		}
		return fmt.Errorf("schema metadata herd.version is %s; this herd reads version %d: pack the data again", ver, FormatVersion)
	}
	if !sameColumns(got, want) {
		return fmt.Errorf("schema %v differs from the format's %v", got, want)
	}
	wmd := want.Metadata()
	for i, k := range wmd.Keys() {
		v, ok := md.GetValue(k)
		if k == "herd.special_tokens" {
			v, ok = canonicalJSON(v), ok && canonicalJSON(v) != ""
		}
		if !ok || v != wmd.Values()[i] {
			return fmt.Errorf("schema metadata %s is %q but the manifest says %q", k, v, wmd.Values()[i])
		}
	}
	return nil
}

// sameColumns reports whether got has want's column names and types. Nullability is not
// compared (pyarrow marks fields nullable by default); nulls are refused row by row.
func sameColumns(got, want *arrow.Schema) bool {
	if got.NumFields() != want.NumFields() {
		return false
	}
	for i, w := range want.Fields() {
		g := got.Field(i)
		if g.Name != w.Name || g.Type.ID() != w.Type.ID() {
			return false
		}
		if wl, ok := w.Type.(*arrow.ListType); ok && g.Type.(*arrow.ListType).Elem().ID() != wl.Elem().ID() {
			return false
		}
	}
	return true
}

// canonicalJSON re-encodes a JSON map of special tokens so that key order and spacing
// written by another tool do not matter; "" if it is not such a map.
func canonicalJSON(s string) string {
	var m map[string]int32
	if json.Unmarshal([]byte(s), &m) != nil {
		return ""
	}
	out, _ := json.Marshal(m)
	return string(out)
}

// loadBatch reads and validates record batch bi, which must hold want rows starting at the
// shard's row first.
func (s *Shards) loadBatch(sh *mappedShard, bi int, first, want int64) (b *shardBatch, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, usererr.New(fmt.Sprintf("%s row %d", sh.name, first), "malformed record batch %d: %v", bi, p)
		}
	}()
	rec, err := sh.fr.RecordBatchAt(bi)
	if err != nil {
		return nil, usererr.New(fmt.Sprintf("%s row %d", sh.name, first), "unreadable record batch %d: %v", bi, err)
	}
	return s.checkBatch(rec, sh.name, bi, first, want)
}

// checkBatch validates record batch bi of shard name, which must hold want rows starting
// at the shard's row first, and takes ownership of rec.
func (s *Shards) checkBatch(rec arrow.RecordBatch, name string, bi int, first, want int64) (b *shardBatch, err error) {
	where := func(row int64) string { return fmt.Sprintf("%s row %d", name, first+row) }
	defer func() {
		if p := recover(); p != nil {
			rec.Release()
			b, err = nil, usererr.New(where(0), "malformed record batch %d: %v", bi, p)
		}
	}()
	if !sameColumns(rec.Schema(), s.Manifest.Schema()) {
		rec.Release()
		return nil, usererr.New(where(0), "record batch %d has schema %v, not the format's", bi, rec.Schema())
	}
	if rec.NumRows() != want {
		rec.Release()
		return nil, usererr.New(where(0), "record batch %d holds %d rows, want %d", bi, rec.NumRows(), want)
	}
	b = &shardBatch{rec: rec}
	cols := []*listCol{&b.tokens, &b.docs, &b.noLoss, &b.images}
	for c, dst := range cols {
		l, ok := rec.Column(c).(*array.List)
		if !ok || l.NullN() != 0 || l.ValidateFull() != nil || l.ListValues().NullN() != 0 {
			rec.Release()
			return nil, usererr.New(where(0), "column %s of record batch %d is malformed", rec.ColumnName(c), bi)
		}
		off := l.Data().Offset()
		dst.offs = l.Offsets()[off : off+l.Len()+1]
		dst.vals = l.ListValues().(*array.Int32).Int32Values()
	}
	px, ok := rec.Column(4).(*array.Binary)
	if !ok || px.NullN() != 0 || px.ValidateFull() != nil {
		rec.Release()
		return nil, usererr.New(where(0), "column pixels of record batch %d is malformed", bi)
	}
	b.pixels, b.pixelOffs = px.ValueBytes(), px.ValueOffsets()
	if len(b.pixelOffs) > 0 && b.pixelOffs[0] != 0 { // ValueBytes starts at the first row's data
		base := b.pixelOffs[0]
		offs := make([]int32, len(b.pixelOffs))
		for i, o := range b.pixelOffs {
			offs[i] = o - base
		}
		b.pixelOffs = offs
	}
	for i := 0; i < int(want); i++ {
		r := Row{Tokens: b.tokens.at(i), Docs: b.docs.at(i), NoLoss: b.noLoss.at(i), Images: b.images.at(i),
			Pixels: b.pixels[b.pixelOffs[i]:b.pixelOffs[i+1]]}
		if msg := s.Manifest.validate(&r); msg != "" {
			rec.Release()
			return nil, usererr.New(where(int64(i)), "%s", msg)
		}
	}
	return b, nil
}

// validate checks one row against the format; "" if it is well formed.
func (m *Manifest) validate(r *Row) string {
	L := int32(m.SeqLen + 1)
	if int32(len(r.Tokens)) != L {
		return fmt.Sprintf("holds %d tokens, want seq_len+1 = %d", len(r.Tokens), L)
	}
	for t, v := range r.Tokens {
		if v < 0 || int(v) >= m.VocabSize {
			return fmt.Sprintf("token %d at position %d is outside the vocabulary [0, %d)", v, t, m.VocabSize)
		}
	}
	sum := int32(0)
	for _, n := range r.Docs {
		if n <= 0 {
			return fmt.Sprintf("document segment lengths %v must be positive", r.Docs)
		}
		sum += n
	}
	if sum != L {
		return fmt.Sprintf("document segment lengths sum to %d, want %d", sum, L)
	}
	if bad := checkSpans(r.NoLoss, L, false); bad != "" {
		return "no_loss " + bad
	}
	if bad := checkSpans(r.Images, L, true); bad != "" {
		return "images " + bad
	}
	if n := patchCount(r.Images); n*m.PatchPixels() != len(r.Pixels) || (n > 0 && m.Patch == 0) {
		return fmt.Sprintf("holds %d pixel bytes for %d patches of %d pixels", len(r.Pixels), n, m.PatchPixels())
	}
	return ""
}

// checkSpans checks increasing, non-overlapping pairs inside [0, L): [start, end) pairs, or
// [start, count) pairs when counted.
func checkSpans(p []int32, L int32, counted bool) string {
	if len(p)%2 != 0 {
		return fmt.Sprintf("has an odd number of values %d", len(p))
	}
	prev := int32(0)
	for i := 0; i < len(p); i += 2 {
		lo, hi := p[i], p[i+1]
		if counted {
			hi = lo + p[i+1]
		}
		if lo < prev || hi <= lo || hi > L {
			return fmt.Sprintf("span %d [%d, %d) is not increasing inside [0, %d)", i/2, lo, hi, L)
		}
		prev = hi
	}
	return ""
}

// Close unmaps every shard. Rows read before stay valid only until Close.
func (s *Shards) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, sh := range s.shards {
		if sh == nil {
			continue
		}
		for _, b := range sh.batches {
			if b != nil {
				b.rec.Release()
			}
		}
		sh.fr.Close()
		unmapFile(sh.data)
		s.shards[k] = nil
	}
	if s.remote != nil {
		s.remote.close()
	}
	return nil
}

// OpenShardStream opens a dataset's manifest and serves it as a Stream; seqLen must be
// the one the data was packed for.
func OpenShardStream(manifestPath string, seqLen, globalBatch, microBatch, rank, world int, seed uint64) (*Stream, error) {
	sh, err := OpenShards(manifestPath, nil)
	if err != nil {
		return nil, err
	}
	return shardStream(sh, manifestPath, seqLen, globalBatch, microBatch, rank, world, seed)
}

// shardStream serves sh, local or remote, as a Stream that closes it.
func shardStream(sh *Shards, where string, seqLen, globalBatch, microBatch, rank, world int, seed uint64) (*Stream, error) {
	if sh.Manifest.SeqLen != seqLen {
		sh.Close()
		return nil, usererr.New("model.seq_len", "is %d but %s was packed for seq_len %d; set model.seq_len to %d or pack again", seqLen, where, sh.Manifest.SeqLen, sh.Manifest.SeqLen)
	}
	st, err := NewStream(sh, sh.Info(), globalBatch, microBatch, rank, world, seed)
	if err != nil {
		sh.Close()
		return nil, err
	}
	st.closer = sh
	return st, nil
}

// Verify checks every shard's hash and every row, reporting each shard's bytes to progress
// (which may be nil) as it is done.
func (s *Shards) Verify(progress func(bytes int64)) error {
	for k, info := range s.Manifest.Shards {
		for bi := 0; int64(bi*s.Manifest.BatchRows) < info.Rows; bi++ {
			if _, err := s.batch(k, bi); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(info.Bytes)
		}
	}
	return nil
}
