package data

import "fmt"

// Synthetic rows are uniformly random tokens, one document per row, for benchmarks
// (`data: {synthetic: true}`): no files, no reading cost, and the same rows on every
// machine. Token t of row i is a hash of (seed, i, t), so any row can be produced in any
// order and the stream resumes like any other.

// syntheticRows is the number of rows in one synthetic epoch: large enough that no
// benchmark repeats a row, small enough for the sampler's arithmetic.
const syntheticRows = 1 << 30

type synthetic struct {
	L     int
	vocab uint64
	seed  uint64
}

func (s synthetic) Row(i int64, r *Row) error {
	r.Tokens = resize(r.Tokens, s.L)
	base := mix64(s.seed ^ mix64(uint64(i)))
	for t := range r.Tokens {
		r.Tokens[t] = int32(mix64(base+uint64(t)) % s.vocab)
	}
	r.Docs = append(r.Docs[:0], int32(s.L))
	r.NoLoss, r.Images, r.Pixels = r.NoLoss[:0], r.Images[:0], r.Pixels[:0]
	return nil
}

// OpenSynthetic serves random rows of seqLen+1 tokens below vocab to rank of world, with
// the global and micro batch sizes of the config; seed draws both the tokens and the order.
func OpenSynthetic(vocab, seqLen, globalBatch, microBatch, rank, world int, seed uint64) (*Stream, error) {
	info := Info{Rows: syntheticRows, SeqLen: seqLen, Vocab: vocab, Tokens: syntheticRows * int64(seqLen+1),
		Docs: syntheticRows, Hash: fmt.Sprintf("synthetic-v%d-L%d-s%d", vocab, seqLen+1, seed), Tokenizer: "synthetic"}
	return NewStream(synthetic{L: seqLen + 1, vocab: uint64(vocab), seed: seed}, info, globalBatch, microBatch, rank, world, seed)
}
