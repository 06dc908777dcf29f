package data

import (
	"fmt"

	"github.com/herdml/herd/internal/usererr"
)

// This file is the sampler: which rows a rank reads, in which order. It is shared by every
// Source (text files, Arrow shards, Flight), so that the order depends on the dataset's
// size, the seed and the batch shape only, never on how the rows are stored.
//
// Samples are numbered by one global counter k = epoch*N + index over an endless sequence
// of epochs. Sample k is row perm(seed, epoch)(index). Step s reads samples [s*G, (s+1)*G);
// rank r of W reads the slice s*G + r*(G/W) + [0, G/W) of it, in micro-batches of M. So
// the union over ranks at a step is the same set of rows for any W that divides G, and a
// position is one integer that any world size can resume from at a step boundary.

// Sampler walks one rank's share of the global sample order.
type Sampler struct {
	n             int64 // rows per epoch N
	global, micro int   // G sequences per step (all ranks), M per micro-batch
	rank, world   int   // r of W
	seed          uint64
	step, off     int64 // next sample: step*G + rank*(G/W) + off
	cachedEpoch   int64 // epoch whose order perm holds
	perm          feistel
}

// NewSampler checks the batch shape and returns a sampler at the start of epoch 0.
// Shape errors are user errors naming the config key at fault.
func NewSampler(rows int64, globalBatch, microBatch, rank, world int, seed uint64) (*Sampler, error) {
	switch {
	case rows <= 0:
		return nil, usererr.New("data", "the dataset holds no sequences")
	case globalBatch <= 0:
		return nil, usererr.New("train.global_batch", "must be a positive integer, got %d", globalBatch)
	case microBatch <= 0:
		return nil, usererr.New("train.micro_batch", "must be a positive integer, got %d", microBatch)
	case world <= 0:
		return nil, usererr.New("parallel.data", "must be a positive integer, got %d", world)
	case globalBatch%world != 0:
		return nil, usererr.New("train.global_batch", "must be divisible by the number of data-parallel ranks (%d), got %d", world, globalBatch)
	case (globalBatch/world)%microBatch != 0:
		return nil, usererr.New("train.micro_batch", "must divide the per-rank batch global_batch/ranks = %d, got %d", globalBatch/world, microBatch)
	case rank < 0 || rank >= world:
		return nil, fmt.Errorf("rank %d out of range [0, %d)", rank, world)
	}
	return &Sampler{n: rows, global: globalBatch, micro: microBatch, rank: rank, world: world,
		seed: seed, cachedEpoch: -1}, nil
}

// Rows is N, the number of rows in one epoch.
func (s *Sampler) Rows() int64 { return s.n }

// MicroSteps is the number of micro-batches per rank per optimizer step (gradient
// accumulation steps).
func (s *Sampler) MicroSteps() int { return s.global / s.world / s.micro }

// Next appends the rows of this rank's next micro-batch to rows and returns it.
func (s *Sampler) Next(rows []int64) []int64 {
	per := int64(s.global / s.world)
	for j := 0; j < s.micro; j++ {
		k := s.step*int64(s.global) + int64(s.rank)*per + s.off
		rows = append(rows, s.Row(k))
		s.off++
	}
	if s.off == per {
		s.step, s.off = s.step+1, 0
	}
	return rows
}

// Row is the row that global sample k reads.
func (s *Sampler) Row(k int64) int64 {
	epoch, index := k/s.n, k%s.n
	if epoch != s.cachedEpoch {
		s.perm = newFeistel(s.n, s.seed, uint64(epoch))
		s.cachedEpoch = epoch
	}
	return s.perm.at(index)
}

// State is the position after the last micro-batch returned. At a step boundary it is the
// same for every rank, so any world size can resume from it.
func (s *Sampler) State(hash string) State {
	k := s.step * int64(s.global)
	if s.off > 0 {
		k += int64(s.rank)*int64(s.global/s.world) + s.off
	}
	return State{Epoch: k / s.n, Index: k % s.n, Seed: s.seed, Hash: hash}
}

// Restore moves to st, which must belong to the dataset identified by hash. A position in
// the middle of a step belongs to one rank's slice and is refused by the others.
func (s *Sampler) Restore(st State, hash string) error {
	if st.Hash != hash {
		return usererr.New("data state", "was saved for dataset %s, but this dataset is %s; resume with the data the run started with", st.Hash, hash)
	}
	if st.Epoch < 0 || st.Index < 0 || st.Index >= s.n {
		return usererr.New("data state", "position epoch %d index %d is outside a dataset of %d sequences", st.Epoch, st.Index, s.n)
	}
	k := st.Epoch*s.n + st.Index
	step, o := k/int64(s.global), k%int64(s.global)
	per := int64(s.global / s.world)
	off := int64(0)
	if o != 0 {
		off = o - int64(s.rank)*per
		if off <= 0 || off >= per || off%int64(s.micro) != 0 {
			return usererr.New("data state", "sample %d is inside step %d but not at a micro-batch boundary of rank %d of %d; resume from a checkpoint taken at a step boundary", k, step, s.rank, s.world)
		}
	}
	s.seed, s.step, s.off = st.Seed, step, off
	s.cachedEpoch = -1
	return nil
}

// feistel is a keyed bijection of [0, n): a balanced Feistel network on the smallest even
// number of bits covering n, cycle-walking until the value falls inside [0, n). It gives
// any row of an epoch's shuffled order in O(1) time and memory, so datasets of billions of
// rows need no permutation table, and it is simple to reproduce in another language.
type feistel struct {
	n    int64
	half uint // bits per half
	keys [feistelRounds]uint64
}

const feistelRounds = 6

func newFeistel(n int64, seed, epoch uint64) feistel {
	bits := uint(1)
	for int64(1)<<bits < n {
		bits++
	}
	f := feistel{n: n, half: (bits + 1) / 2}
	k := mix64(seed ^ mix64(epoch))
	for r := range f.keys {
		f.keys[r] = mix64(k + uint64(r))
	}
	return f
}

func (f feistel) at(i int64) int64 {
	mask := uint64(1)<<f.half - 1
	x := uint64(i)
	for {
		l, r := x>>f.half, x&mask
		for _, key := range f.keys {
			l, r = r, l^(mix64(r^key)&mask)
		}
		x = l<<f.half | r
		if x < uint64(f.n) {
			return int64(x)
		}
	}
}

// mix64 is SplitMix64's output function: a fast, well-tested 64-bit bijective mixer.
func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
