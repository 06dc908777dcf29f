package workflows

import (
	"context"
	"net"
	"strings"
	"testing"
)

// A worker's rank slots: a full worker refuses (so that the retry goes elsewhere), a
// retried reservation replaces its earlier self instead of taking a second slot, and a
// rank's segment takes its listener once.
func TestRankSlots(t *testing.T) {
	a := &Activities{Identity: "w", Ranks: 1, slots: slots{free: 1, held: map[string]net.Listener{}}}
	ctx := context.Background()
	first, err := a.ReserveRank(ctx, RankInput{Group: "g", Rank: 0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReserveRank(ctx, RankInput{Group: "g", Rank: 1}); err == nil || !strings.Contains(err.Error(), "no free rank slot") {
		t.Fatalf("second rank on a worker of one slot: %v, want refused", err)
	}
	again, err := a.ReserveRank(ctx, RankInput{Group: "g", Rank: 0})
	if err != nil {
		t.Fatalf("retried reservation: %v", err)
	}
	if _, err := net.Dial("tcp", first.Addr); err == nil && first.Addr != again.Addr {
		t.Errorf("the replaced listener %s still accepts", first.Addr)
	}
	lis := a.take(slotKey("g", 0))
	if lis == nil || lis.Addr().String() != again.Addr {
		t.Fatalf("take: %v, want the listener on %s", lis, again.Addr)
	}
	defer lis.Close()
	if a.take(slotKey("g", 0)) != nil {
		t.Error("a listener taken twice")
	}
	a.release()
	if _, err := a.ReserveRank(ctx, RankInput{Group: "g", Rank: 1}); err != nil {
		t.Errorf("after the segment released its slot: %v", err)
	}
}
