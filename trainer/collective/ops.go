package collective

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"unsafe"
)

// Op combines two values of an all-reduce.
type Op int

const (
	Sum Op = iota
	// Max is exact and order-free: FP8 amax values agree on every rank.
	Max
)

// codec is the wire format of float32 values.
type codec struct{ wire Wire }

func (c codec) size() int {
	if c.wire == BF16 {
		return 2
	}
	return 4
}

// encode writes src into dst (len(src)*size bytes).
func (c codec) encode(dst []byte, src []float32) {
	if c.wire == BF16 {
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], toBF16(v))
		}
		return
	}
	if littleEndian && len(src) > 0 {
		copy(dst, unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*len(src)))
		return
	}
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// littleEndian is true where float32 slices are already in wire order, so that encoding
// and decoding float32 is a memory copy (decoding where the received payload is aligned
// for float32, as it is unless gRPC handed over its own buffer at an odd offset).
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// view is src's values in place, where the wire is float32 in machine order and src is
// aligned for float32 (as frames are); ok is false elsewhere, and then decode copies.
func (c codec) view(src []byte) (v []float32, ok bool) {
	if c.wire != F32 || !littleEndian || len(src) == 0 || uintptr(unsafe.Pointer(&src[0]))%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&src[0])), len(src)/4), true
}

// decode combines the values in src into dst: dst = src (copy), dst + src or max(dst, src).
func (c codec) decode(dst []float32, src []byte, op Op, copyOnly bool) {
	if v, ok := c.view(src); ok && op == Sum {
		if copyOnly {
			copy(dst, v)
		} else {
			add(dst, v)
		}
		return
	}
	for i := range dst {
		var v float32
		if c.wire == BF16 {
			v = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		} else {
			v = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
		switch {
		case copyOnly:
			dst[i] = v
		case op == Max:
			if v > dst[i] || v != v {
				dst[i] = v
			}
		default:
			dst[i] += v
		}
	}
}

// add is dst[i] += v[i], four at a time with the bounds checks hoisted: the inner loop
// of every reduce-scatter, as fast as plain Go gets without assembly.
func add(dst, v []float32) {
	dst = dst[:len(v)]
	i := 0
	for ; i+4 <= len(v); i += 4 {
		d, s := dst[i:i+4:i+4], v[i:i+4:i+4]
		d[0] += s[0]
		d[1] += s[1]
		d[2] += s[2]
		d[3] += s[3]
	}
	for ; i < len(v); i++ {
		dst[i] += v[i]
	}
}

// round makes x what the wire would deliver, so that the rank that owns a result keeps
// the same values as those who receive it.
func (c codec) round(x []float32) {
	if c.wire != BF16 {
		return
	}
	for i, v := range x {
		x[i] = math.Float32frombits(uint32(toBF16(v)) << 16)
	}
}

// toBF16 rounds v to bfloat16, to nearest with ties to even; NaN stays NaN.
func toBF16(v float32) uint16 {
	b := math.Float32bits(v)
	if v != v {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// span is [lo, hi) of a buffer.
type span struct{ lo, hi int }

// chunks splits n elements into w near-equal contiguous chunks.
func chunks(n, w int) []span {
	s := make([]span, w)
	for c := range s {
		s[c] = span{c * n / w, (c + 1) * n / w}
	}
	return s
}

// pieces splits a span into frames of at most pieceBytes on the wire; an empty span is
// one empty piece, so that every rank sends and expects the same number of frames.
func (c codec) pieces(s span) []span {
	per := pieceBytes / c.size()
	var out []span
	for lo := s.lo; lo < s.hi || len(out) == 0; lo += per {
		out = append(out, span{lo, min(lo+per, s.hi)})
	}
	return out
}

// AllReduce replaces x on every rank by the element-wise op (Sum or Max) of every rank's
// x, with a ring: reduce-scatter then all-gather, each of W-1 steps, chunk by chunk in
// pieces, so that a piece is forwarded as soon as it is reduced and both directions of
// every link stay busy. Element i in chunk c is summed in the fixed order of ranks c+1,
// c+2, ... around the ring: bit-identical from run to run at one world size. Every rank
// must pass the same length.
func (g *Group) AllReduce(ctx context.Context, x []float32, op Op) error {
	c, done, err := g.begin(ctx, "all-reduce")
	defer done()
	if err != nil || g.world == 1 {
		return err
	}
	cd := codec{g.opts.Wire}
	if op == Max {
		cd.wire = F32 // a max must be exact: it sets FP8 scales
	}
	w, r := g.world, g.rank
	next, prev := (r+1)%w, (r-1+w)%w
	ch := chunks(len(x), w)
	// prev's frames, in order: the reduce-scatter's pieces to add, then the all-gather's
	// to copy. The all-gather's zones are armed once the reduce-scatter is done: with 3
	// ranks or more, they overlap chunks this rank may have added itself.
	var rs, ag [][]span
	for s := 0; s < w-1; s++ {
		rs = append(rs, cd.pieces(ch[(r-s-1+2*w)%w]))
		ag = append(ag, cd.pieces(ch[(r-s+w)%w]))
	}
	rsZones := cd.zones(x, op, true, rs...)
	c.land(prev, rsZones)
	for _, p := range cd.pieces(ch[r]) {
		if err := c.sendValues(next, cd, x, p); err != nil {
			return err
		}
	}
	// Reduce-scatter: at step s receive chunk r-s-1, add, pass it on. After the last
	// step this rank holds chunk r+1 complete, which starts the all-gather.
	for s := 0; s < w-1; s++ {
		for _, p := range cd.pieces(ch[(r-s-1+2*w)%w]) {
			b, landed, err := c.recvValues(prev, cd, p.hi-p.lo)
			if err != nil {
				return err
			}
			if !landed {
				cd.decode(x[p.lo:p.hi], b, op, false)
			}
			if s == w-2 {
				cd.round(x[p.lo:p.hi])
			}
			if err := c.sendValues(next, cd, x, p); err != nil {
				return err
			}
		}
	}
	if agZones := cd.zones(x, op, false, ag...); agZones != nil {
		c.land(prev, append(make([]zone, len(rsZones)), agZones...))
	}
	// All-gather: at step t receive the complete chunk r-t and pass it on.
	for t := 0; t < w-1; t++ {
		for _, p := range cd.pieces(ch[(r-t+w)%w]) {
			b, landed, err := c.recvValues(prev, cd, p.hi-p.lo)
			if err != nil {
				return err
			}
			if !landed {
				cd.decode(x[p.lo:p.hi], b, op, true)
			}
			if t < w-2 {
				if err := c.sendValues(next, cd, x, p); err != nil {
					return err
				}
			}
		}
	}
	return c.flushed()
}

// Broadcast copies root's x to every rank's x, in float32 whatever the wire: it sets
// replicated state, which must be exact.
func (g *Group) Broadcast(ctx context.Context, x []float32, root int) error {
	c, done, err := g.begin(ctx, "broadcast")
	defer done()
	if err != nil || g.world == 1 {
		return err
	}
	cd := codec{F32}
	if g.rank != root {
		c.land(root, cd.zones(x, Sum, false, cd.pieces(span{0, len(x)})))
	}
	for _, p := range cd.pieces(span{0, len(x)}) {
		if g.rank == root {
			for q := range g.world {
				if q != root {
					if err := c.sendValues(q, cd, x, p); err != nil {
						return err
					}
				}
			}
			continue
		}
		b, landed, err := c.recvValues(root, cd, p.hi-p.lo)
		if err != nil {
			return err
		}
		if !landed {
			cd.decode(x[p.lo:p.hi], b, Sum, true)
		}
	}
	return c.flushed()
}

// Barrier returns once every rank has called it.
func (g *Group) Barrier(ctx context.Context) error {
	_, err := g.AllGather(ctx, nil)
	return err
}

// AllGather gives every rank every rank's blob, by rank; blobs may differ in length. It
// carries small state (losses, data positions) that must be compared or combined exactly.
func (g *Group) AllGather(ctx context.Context, mine []byte) ([][]byte, error) {
	c, done, err := g.begin(ctx, "all-gather")
	defer done()
	if err != nil {
		return nil, err
	}
	all := make([][]byte, g.world)
	all[g.rank] = mine
	for q := range g.world {
		if q != g.rank {
			if err := c.send(q, mine); err != nil {
				return nil, err
			}
		}
	}
	for q := range g.world {
		if q != g.rank {
			b, _, err := c.recv(q)
			if err != nil {
				return nil, err
			}
			all[q] = bytes.Clone(b)
		}
	}
	return all, nil
}
