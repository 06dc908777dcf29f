// Package data turns corpora into the token stream the trainer consumes: packed sequences
// with document boundaries and image patches, read in a deterministic, resumable order.
package data

// Batch is B packed sequences of T positions, ready for one forward pass.
// Legend: B sequences, T positions, P = patch*patch*channels pixels per image patch.
type Batch struct {
	B, T int

	Tokens  []int32   // [B*T] input token id at each position (ignored where a patch is placed)
	Targets []int32   // [B*T] the token to predict at each position
	Mask    []float32 // [B*T] loss weight: 1 = trained on, 0 = ignored (padding, images, prompts)
	Pos     []int32   // [B*T] position inside its document; restarts at 0 per document (RoPE)
	Doc     []int32   // [B*T] document number inside its sequence; attention stays within one

	// Image patches, early fusion: patch i's pixels replace the token embedding at flat
	// position PatchAt[i] = b*T + t.
	Patches []float32 // [NPatch*P] raw pixels in [0, 1], patch-major, row-major inside a patch
	PatchAt []int32   // [NPatch] flat positions, increasing
}

// Resize makes b hold B sequences of T positions with no patches, reusing its buffers.
func (b *Batch) Resize(B, T int) {
	n := B * T
	b.B, b.T = B, T
	b.Tokens = resize(b.Tokens, n)
	b.Targets = resize(b.Targets, n)
	b.Mask = resize(b.Mask, n)
	b.Pos = resize(b.Pos, n)
	b.Doc = resize(b.Doc, n)
	b.Patches = b.Patches[:0]
	b.PatchAt = b.PatchAt[:0]
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// State is a source's position in its stream: a few integers that fully determine every
// batch that follows. It is saved in checkpoints; restoring it continues the stream exactly.
type State struct {
	Epoch int64  `json:"epoch"`
	Index int64  `json:"index"`          // next sample (global row) in the epoch's order
	Seed  uint64 `json:"seed"`           // shuffle seed
	Hash  string `json:"hash,omitempty"` // identity of the dataset the order was drawn from
}

// Source yields micro-batches in a deterministic order that can be saved and restored.
type Source interface {
	// Next fills b with this rank's next micro-batch.
	Next(b *Batch) error
	// State is the position just after the last batch returned by Next.
	State() State
	// Restore moves the source to a saved position; the next batches then equal those an
	// uninterrupted source would have returned. It refuses a state of another dataset.
	Restore(State) error
}
