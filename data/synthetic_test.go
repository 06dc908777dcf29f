package data

import (
	"slices"
	"testing"
)

// Synthetic batches are valid tokens, the same for the same seed, and resume like any
// other stream.
func TestSynthetic(t *testing.T) {
	open := func(seed uint64) *Stream {
		s, err := OpenSynthetic(100, 16, 4, 2, 0, 1, seed)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := open(3), open(3)
	var ba, bb Batch
	a.Next(&ba)
	saved := a.State()
	a.Next(&ba)
	b.Restore(saved)
	b.Next(&bb)
	if !slices.Equal(ba.Tokens, bb.Tokens) || !slices.Equal(ba.Targets, bb.Targets) {
		t.Fatal("a restored synthetic stream gave another batch")
	}
	seen := map[int32]bool{}
	for i, tok := range ba.Tokens {
		if tok < 0 || tok >= 100 || ba.Mask[i] != 1 {
			t.Fatalf("position %d: token %d, mask %g; want a token below 100, trained on", i, tok, ba.Mask[i])
		}
		seen[tok] = true
	}
	if len(seen) < 16 {
		t.Fatalf("only %d distinct tokens in 32 positions: not random", len(seen))
	}
	c := open(4)
	if err := c.Restore(saved); err == nil {
		t.Fatal("a position of seed 3 was accepted by the stream of seed 4")
	}
	var first, other Batch
	open(3).Next(&first)
	c.Next(&other)
	if slices.Equal(first.Tokens, other.Tokens) {
		t.Fatal("seeds 3 and 4 gave the same tokens")
	}
}
