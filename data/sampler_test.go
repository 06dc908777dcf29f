package data

import (
	"errors"
	"slices"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

func TestFeistelIsAPermutationThatShuffles(t *testing.T) {
	for _, n := range []int64{1, 2, 3, 7, 64, 100, 1000, 4097} {
		f := newFeistel(n, 42, 0)
		seen := make([]bool, n)
		fixed := int64(0)
		for i := int64(0); i < n; i++ {
			v := f.at(i)
			if v < 0 || v >= n || seen[v] {
				t.Fatalf("n=%d: at(%d) = %d repeats or is out of range", n, i, v)
			}
			seen[v] = true
			if v == i {
				fixed++
			}
		}
		// a shuffled order keeps about one element in place; the identity keeps all
		if n >= 100 && fixed > n/10 {
			t.Errorf("n=%d: %d fixed points, the order is barely shuffled", n, fixed)
		}
	}
	a, b, c := newFeistel(1000, 1, 0), newFeistel(1000, 1, 1), newFeistel(1000, 2, 0)
	same := func(x, y feistel) bool {
		for i := int64(0); i < 1000; i++ {
			if x.at(i) != y.at(i) {
				return false
			}
		}
		return true
	}
	if same(a, b) || same(a, c) || !same(a, newFeistel(1000, 1, 0)) {
		t.Fatal("order must change with the epoch and the seed, and only with them")
	}
}

// stepRows reads one optimizer step from every rank of world and returns the union, in
// rank order.
func stepRows(t *testing.T, samplers []*Sampler) []int64 {
	var all []int64
	for _, s := range samplers {
		for m := 0; m < s.MicroSteps(); m++ {
			all = s.Next(all)
		}
	}
	return all
}

func newSamplers(t *testing.T, n int64, G, M, W int, seed uint64) []*Sampler {
	t.Helper()
	var out []*Sampler
	for r := 0; r < W; r++ {
		s, err := NewSampler(n, G, M, r, W, seed)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestElasticDeterminism(t *testing.T) {
	const n, G = 37, 8 // 37 rows: steps straddle epoch boundaries
	one := newSamplers(t, n, G, 2, 1, 9)
	two := newSamplers(t, n, G, 2, 2, 9)
	four := newSamplers(t, n, G, 1, 4, 9)
	epoch0 := map[int64]int{}
	for step := 0; step < 20; step++ {
		want := stepRows(t, one)
		if got := stepRows(t, two); !slices.Equal(got, want) {
			t.Fatalf("step %d: world 2 reads %v, world 1 %v", step, got, want)
		}
		if got := stepRows(t, four); !slices.Equal(got, want) {
			t.Fatalf("step %d: world 4 reads %v, world 1 %v", step, got, want)
		}
		for i, r := range want {
			if step*G+i < n {
				epoch0[r]++
			}
		}
	}
	if len(epoch0) != n {
		t.Fatalf("epoch 0 visited %d distinct rows of %d", len(epoch0), n)
	}
}

func TestSamplerResume(t *testing.T) {
	const n, G, M = 50, 12, 2
	// every rank of world 3 saves after each micro-batch, a fresh sampler restores, and
	// both must agree on everything that follows
	for r := 0; r < 3; r++ {
		ref := newSamplers(t, n, G, M, 3, 5)[r]
		for k := 0; k < 25; k++ {
			ref.Next(nil)
			st := ref.State("h")
			re := newSamplers(t, n, G, M, 3, 0)[r] // a different seed: the state's wins
			if err := re.Restore(st, "h"); err != nil {
				t.Fatalf("rank %d after %d: %v", r, k+1, err)
			}
			cp := *ref
			for j := 0; j < 10; j++ {
				if a, b := cp.Next(nil), re.Next(nil); !slices.Equal(a, b) {
					t.Fatalf("rank %d resumed after %d micro-batches: %v, want %v", r, k+1, b, a)
				}
			}
		}
	}
	// at a step boundary the state is the same for every rank and resumes on any world size
	s3 := newSamplers(t, n, G, M, 3, 5)
	stepRows(t, s3)
	stepRows(t, s3)
	st := s3[0].State("h")
	for _, s := range s3[1:] {
		if s.State("h") != st {
			t.Fatalf("ranks disagree at a step boundary: %+v vs %+v", s.State("h"), st)
		}
	}
	s2 := newSamplers(t, n, G, M, 2, 5)
	for _, s := range s2 {
		if err := s.Restore(st, "h"); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := stepRows(t, s3), stepRows(t, s2); !slices.Equal(a, b) {
		t.Fatalf("world 2 resumed from world 3's state reads %v, want %v", b, a)
	}
}

func TestRestoreRefusals(t *testing.T) {
	s := newSamplers(t, 50, 12, 2, 3, 5)
	s[1].Next(nil)
	mid := s[1].State("h")
	for _, tc := range []struct {
		name string
		st   State
		rank int
	}{
		{"other dataset", State{Hash: "other"}, 0},
		{"mid-step state of another rank", mid, 0},
		{"index past the end", State{Index: 50, Hash: "h"}, 0},
	} {
		err := s[tc.rank].Restore(tc.st, "h")
		var ue *usererr.Error
		if !errors.As(err, &ue) {
			t.Errorf("%s: error %v, want a user error", tc.name, err)
		}
	}
	if err := s[1].Restore(mid, "h"); err != nil {
		t.Fatalf("own mid-step state refused: %v", err)
	}
}
