package collective

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
)

// A rogue process on loopback that poses as rank 1 of a running group, without the
// group's token or with a wrong one, is refused on both transports (bulk links for
// all-reduces, gRPC for gathers): its own call fails at once with ErrBadToken naming the
// rank that refused it, the refusing ranks report it, and the group's own all-reduces
// still complete with the right sums.
func TestRoguePeerIsRefused(t *testing.T) {
	var (
		mu      sync.Mutex
		refused []string
	)
	gs := group(t, 3, Options{Refused: func(remote string) {
		mu.Lock()
		defer mu.Unlock()
		refused = append(refused, remote)
	}})
	addrs := []string{gs[0].Addr(), "", gs[2].Addr()}

	for _, rogue := range []struct {
		token, op string
	}{{"", "all-reduce"}, {"guess", "all-reduce"}, {"", "barrier"}, {"guess", "barrier"}} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[1] = lis.Addr().String()
		g, err := New(lis, 1, addrs, Options{Token: rogue.token})
		if err != nil {
			t.Fatal(err)
		}
		if rogue.op == "barrier" {
			err = g.Barrier(context.Background())
		} else {
			err = g.AllReduce(context.Background(), make([]float32, 1000), Sum)
		}
		g.Close()
		var pe *PeerError
		if !errors.Is(err, ErrBadToken) || !errors.As(err, &pe) || pe.Rank == 1 ||
			!strings.Contains(err.Error(), gs[pe.Rank].Addr()) {
			t.Errorf("rogue with token %q, %s: %v, want ErrBadToken naming the rank that refused it and its address", rogue.token, rogue.op, err)
		}
		mu.Lock()
		n := len(refused)
		mu.Unlock()
		if n == 0 {
			t.Errorf("rogue with token %q, %s: refused, but no rank reported it", rogue.token, rogue.op)
		}
	}

	xs := inputs(3, 2*pieceBytes/4+5, 11)
	want := TreeSum(clone(xs))
	noErrors(t, each(gs, func(g *Group) error { return g.AllReduceTree(context.Background(), xs[g.Rank()]) }))
	ys := inputs(3, 1001, 12)
	ring := clone(ys)
	noErrors(t, each(gs, func(g *Group) error { return g.AllReduce(context.Background(), ring[g.Rank()], Sum) }))
	noErrors(t, each(gs, func(g *Group) error { return g.Barrier(context.Background()) }))
	for r := range xs {
		for i := range xs[r] {
			if math.Float32bits(xs[r][i]) != math.Float32bits(want[i]) {
				t.Fatalf("after the rogues, tree all-reduce rank %d [%d] = %g, want %g", r, i, xs[r][i], want[i])
			}
		}
		for i := range ys[r] {
			if sum := ys[0][i] + ys[1][i] + ys[2][i]; math.Abs(float64(ring[r][i]-sum)) > 1e-5 {
				t.Fatalf("after the rogues, ring all-reduce rank %d [%d] = %g, want %g", r, i, ring[r][i], sum)
			}
		}
	}
}
