package data

import (
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdml/herd/internal/storage"
)

// Open serves the dataset spec names to rank of world: a shard manifest (a .json file, or
// a folder holding manifest.json), the same in a bucket (s3://bucket/prefix, read through
// a local cache: see fetch), a dataset served over Arrow Flight (grpc://host:port/name,
// see OpenRemote), or else a glob of text files (see OpenText). Close the Stream when
// done.
func Open(spec string, seqLen, globalBatch, microBatch, rank, world int, seed uint64) (*Stream, error) {
	if storage.IsURL(spec) {
		manifest, err := fetch(spec)
		if err != nil {
			return nil, err
		}
		return OpenShardStream(manifest, seqLen, globalBatch, microBatch, rank, world, seed)
	}
	if strings.HasPrefix(spec, "grpc://") {
		sh, err := OpenRemote(spec)
		if err != nil {
			return nil, err
		}
		return shardStream(sh, spec, seqLen, globalBatch, microBatch, rank, world, seed)
	}
	if fi, err := os.Stat(spec); err == nil && fi.IsDir() {
		spec = filepath.Join(spec, ManifestName)
	}
	if strings.HasSuffix(spec, ".json") && !hasMeta(spec) {
		return OpenShardStream(spec, seqLen, globalBatch, microBatch, rank, world, seed)
	}
	return OpenText(spec, seqLen, globalBatch, microBatch, rank, world, seed)
}

// RowReader gives random access to a dataset's packed rows. Implementations may point r's
// slices into their own storage (a memory mapping); they stay valid until the next call.
type RowReader interface {
	Row(i int64, r *Row) error
}

// Stream is a Source over any RowReader, in the Sampler's order. Text files, Arrow shards
// and Flight all serve their rows through it, so they share one order and one resume logic.
type Stream struct {
	rows    RowReader
	info    Info
	sampler *Sampler
	picked  []int64
	row     Row
	closer  io.Closer     // releases the rows' storage, if any
	warming chan struct{} // closed when the prefetch of the next micro-batch is done
}

// warmer is a RowReader that can load rows ahead of use, so that the next micro-batch's
// record batches are fetched, checked and paged in while the trainer computes.
type warmer interface {
	Warm(rows []int64)
}

// NewStream serves rows, described by info, to rank of world.
func NewStream(rows RowReader, info Info, globalBatch, microBatch, rank, world int, seed uint64) (*Stream, error) {
	s, err := NewSampler(info.Rows, globalBatch, microBatch, rank, world, seed)
	if err != nil {
		return nil, err
	}
	return &Stream{rows: rows, info: info, sampler: s}, nil
}

// Next fills b with this rank's next micro-batch of [micro_batch, seq_len] positions.
func (s *Stream) Next(b *Batch) error {
	s.wait()
	before := *s.sampler
	s.picked = s.sampler.Next(s.picked[:0])
	b.Resize(len(s.picked), s.info.SeqLen)
	for j, i := range s.picked {
		if err := s.rows.Row(i, &s.row); err != nil {
			*s.sampler = before // a failed batch is not consumed
			return err
		}
		s.row.fill(b, j)
	}
	s.prefetch()
	return nil
}

// prefetch warms the rows of the next micro-batch in the background: one micro-batch
// ahead at most, so memory stays bounded. Reading ahead changes no result: errors are
// left for Next to meet and report.
func (s *Stream) prefetch() {
	w, ok := s.rows.(warmer)
	if !ok {
		return
	}
	ahead := *s.sampler
	rows := ahead.Next(nil)
	done := make(chan struct{})
	s.warming = done
	go func() {
		defer close(done)
		w.Warm(rows)
	}()
}

// wait lets a prefetch in flight finish.
func (s *Stream) wait() {
	if s.warming != nil {
		<-s.warming
		s.warming = nil
	}
}

// State is the position after the last batch.
func (s *Stream) State() State { return s.sampler.State(s.info.Hash) }

// Restore continues from a saved position of the same dataset.
func (s *Stream) Restore(st State) error {
	s.wait()
	return s.sampler.Restore(st, s.info.Hash)
}

// Info describes the dataset.
func (s *Stream) Info() Info { return s.info }

// Close releases the dataset's files; batches filled before stay valid.
func (s *Stream) Close() error {
	s.wait()
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

// MicroSteps is the number of micro-batches this rank reads per optimizer step.
func (s *Stream) MicroSteps() int { return s.sampler.MicroSteps() }

var _ Source = (*Stream)(nil)
