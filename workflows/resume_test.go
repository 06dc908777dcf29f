package workflows_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// A paused run extended through the resume update: refused while its segment trains,
// then, paused, it trains on to the new length with the weights of a run that had that
// length from the start (a constant schedule extends by itself), and its lineage holds
// the change.
func TestPauseThenExtend(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	inProcessWorker(t, c)
	ctx := context.Background()
	sets := []string{"train.steps=6", "train.schedule.decay=constant", "train.checkpoint.every=2"}
	cfg := microConfig(t, "extend", sets...)
	release := hold(t, "extend", 2)
	if _, err := Submit(ctx, c, TaskQueue, calm(input(cfg))); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, "extend", 2)
	longer := ResumeInput{Extension: config.Extension{Steps: 8}}
	if _, err := Resume(ctx, c, TaskQueue, "extend", longer); !usererr.Is(err) || !strings.Contains(err.Error(), "pause") {
		t.Fatalf("extending a training run: %v, want a user error saying to pause it first", err)
	}
	if _, err := Control(ctx, c, "extend", UpdatePause); err != nil {
		t.Fatal(err)
	}
	release()
	changes, err := Resume(ctx, c, TaskQueue, "extend", longer)
	want := config.Change{Step: 2, Key: "train.steps", Was: "6", Now: "8"}
	if err != nil || !slices.Equal(changes, []config.Change{want}) {
		t.Fatalf("extending the paused run: %v, %v; want %v", changes, err, want)
	}
	p := follow(t, c, "extend")
	if p.State != StateCompleted || p.Step != 8 || p.Steps != 8 || !slices.Equal(p.Lineage, []config.Change{want}) {
		t.Fatalf("extended run: %+v", p)
	}
	direct := microConfig(t, "direct", append(sets, "train.steps=8")...)
	trainDirect(t, direct)
	if got, want := fingerprint(t, cfg), fingerprint(t, direct); got != want {
		t.Errorf("6 steps extended to 8: %s\n8 steps:              %s", got, want)
	}
	if got := fingerprint(t, cfg); !strings.HasPrefix(got, checkpoint.Name(8)) {
		t.Errorf("newest checkpoint %s, want step 8's", got)
	}
}
