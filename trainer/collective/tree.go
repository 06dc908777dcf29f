package collective

import "context"

// AllReduceTree replaces x on every rank by the sum of every rank's x, added in one
// canonical binary tree over the ranks: Tree(0, W), where Tree(lo, hi) of more than one
// rank is Tree(lo, lo+p) + Tree(lo+p, hi) with p the largest power of two below hi-lo.
// Float addition is commutative, so only the tree's shape decides the bits, and the shape
// depends on W alone. A caller that sums its own units with the same rule (TreeSum) gets,
// when every rank holds a power-of-two number of units, exactly the sum Tree(0, U) over
// all U units: the same bits for every world size.
//
// The reduce-scatter is direct: chunk c of every rank goes to rank c, which sums the W
// contributions in the tree; the all-gather sends each complete chunk from its owner to
// every rank. Each rank sends and receives (W-1)/W of x in each phase, as in a ring or in
// recursive halving/doubling, whose pairings give the same tree for power-of-two W, but
// in one round instead of log2 W and for any W.
func (g *Group) AllReduceTree(ctx context.Context, x []float32) error {
	c, done, err := g.begin(ctx, "tree all-reduce")
	defer done()
	if err != nil || g.world == 1 {
		return err
	}
	cd := codec{g.opts.Wire}
	w, r := g.world, g.rank
	ch := chunks(len(x), w)
	// Each peer's frames, in order: its contributions to this rank's chunk (summed in the
	// tree, so no zone), then its own chunk complete, to copy.
	for q := range w {
		if zs := cd.zones(x, Sum, false, cd.pieces(ch[q])); q != r && zs != nil {
			c.land(q, append(make([]zone, len(cd.pieces(ch[r]))), zs...))
		}
	}
	for off := 1; off < w; off++ { // start with the next rank, so that no rank is everyone's first
		q := (r + off) % w
		for _, p := range cd.pieces(ch[q]) {
			if err := c.sendValues(q, cd, x, p); err != nil {
				return err
			}
		}
	}
	// The contributions to one piece, by rank: this rank's in x, the others' in their
	// frames where float32 can be read in place (TreeSum adds into them), else decoded
	// into scratch. The sum lands in x either way.
	scratch := make([][]float32, w)
	parts := make([][]float32, 0, w)
	for _, p := range cd.pieces(ch[r]) {
		n := p.hi - p.lo
		parts = parts[:0]
		for q := range w {
			if q == r {
				parts = append(parts, x[p.lo:p.hi])
				continue
			}
			b, _, err := c.recvValues(q, cd, n) // no zones: the contributions are summed in the tree
			if err != nil {
				return err
			}
			v, ok := cd.view(b)
			if ok {
				c.keep()
			} else {
				if cap(scratch[q]) < n {
					scratch[q] = make([]float32, n)
				}
				v = scratch[q][:n]
				cd.decode(v, b, Sum, true)
			}
			parts = append(parts, v)
		}
		copy(x[p.lo:p.hi], TreeSum(parts)) // a no-op where the sum is in x already
		c.release()
		cd.round(x[p.lo:p.hi])
		for off := 1; off < w; off++ {
			if err := c.sendValues((r+off)%w, cd, x, p); err != nil {
				return err
			}
		}
	}
	for off := 1; off < w; off++ {
		q := (r - off + w) % w
		for _, p := range cd.pieces(ch[q]) {
			b, landed, err := c.recvValues(q, cd, p.hi-p.lo)
			if err != nil {
				return err
			}
			if !landed {
				cd.decode(x[p.lo:p.hi], b, Sum, true)
			}
		}
	}
	return c.flushed()
}

// TreeSum adds equal-length vectors in the canonical tree (see AllReduceTree), reusing
// them as scratch, and returns the vector holding the sum.
func TreeSum(v [][]float32) []float32 {
	t := Tree[[]float32]{vec: HostVectors{}}
	for _, x := range v {
		t.Push(x)
	}
	s, _ := t.Sum()
	return s
}

// Vectors are the vectors a Tree adds and where they live: Go memory (HostVectors) for
// the collective, a compute backend's memory for a trainer's micro-batch gradients.
type Vectors[V any] interface {
	Make(n int) V   // a new vector of n values
	Len(v V) int    // its values
	Add(dst, src V) // dst[i] += src[i]
}

// HostVectors are []float32 in Go memory.
type HostVectors struct{}

func (HostVectors) Make(n int) []float32   { return make([]float32, n) }
func (HostVectors) Len(v []float32) int    { return len(v) }
func (HostVectors) Add(dst, src []float32) { add(dst, src) }

// Tree adds vectors pushed one by one in the canonical binary tree, holding at most
// log2(n)+1 partial sums: after each push, two partial sums over equally many leaves
// merge, like the carries of a binary counter; Sum merges what remains from the top.
// Push takes ownership of x; vectors merged away are kept for Buffer to hand out again,
// so that a loop of Buffer, fill, Push, ..., Sum, Release allocates nothing after the
// first round. The sum's bits depend only on the number of leaves and their values, not
// on where V lives, as long as Add rounds each dst[i] + src[i] once.
type Tree[V any] struct {
	vec    Vectors[V]
	sums   []V
	leaves []int
	free   []V
}

// NewTree returns an empty tree of vectors that vec makes and adds.
func NewTree[V any](vec Vectors[V]) *Tree[V] { return &Tree[V]{vec: vec} }

// Buffer returns a vector of n values to fill and Push: a spare one or a new one.
func (t *Tree[V]) Buffer(n int) V {
	for k := len(t.free) - 1; k >= 0; k-- {
		if b := t.free[k]; t.vec.Len(b) == n {
			t.free = append(t.free[:k], t.free[k+1:]...)
			return b
		}
	}
	return t.vec.Make(n)
}

// Release gives back a vector, such as Sum's result once read, for Buffer to reuse.
func (t *Tree[V]) Release(x V) { t.free = append(t.free, x) }

// Push adds the next leaf.
func (t *Tree[V]) Push(x V) {
	t.sums = append(t.sums, x)
	t.leaves = append(t.leaves, 1)
	for n := len(t.sums); n >= 2 && t.leaves[n-1] == t.leaves[n-2]; n = len(t.sums) {
		t.merge()
	}
}

// merge adds the top partial sum into the one below it.
func (t *Tree[V]) merge() {
	n := len(t.sums)
	a, b := t.sums[n-2], t.sums[n-1]
	t.vec.Add(a, b)
	t.leaves[n-2] += t.leaves[n-1]
	t.sums, t.leaves = t.sums[:n-1], t.leaves[:n-1]
	t.free = append(t.free, b)
}

// Sum returns the total of the leaves pushed, false if none, and empties the tree.
func (t *Tree[V]) Sum() (V, bool) {
	for len(t.sums) > 1 {
		t.merge()
	}
	var s V
	ok := len(t.sums) == 1
	if ok {
		s = t.sums[0]
	}
	t.sums, t.leaves = t.sums[:0], t.leaves[:0]
	return s, ok
}
