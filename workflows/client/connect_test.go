package client

import (
	"context"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/workflows"
)

// Connect makes the one choice of every command: --temporal when given (one that does not
// answer is a user error naming it); else the herd process serving the state dir, joined
// without a worker of this process; else the embedded server, started here with one.
func TestConnectChooses(t *testing.T) {
	_, err := Connect(Target{Addr: "127.0.0.1:1", Queue: workflows.TaskQueue, StateDir: t.TempDir()}, nil)
	if !usererr.Is(err) || !strings.Contains(err.Error(), "--temporal 127.0.0.1:1") {
		t.Errorf("unreachable --temporal: %v, want a user error naming it", err)
	}

	target := Target{Queue: workflows.TaskQueue, StateDir: t.TempDir()}
	if !target.Embedded() {
		t.Fatal("a fresh state dir: not embedded")
	}
	first, err := Connect(target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if !first.InProcess() || target.Embedded() {
		t.Fatalf("first connect: in process %v, still embedded %v; want the server started here", first.InProcess(), target.Embedded())
	}
	second, err := Connect(target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if second.InProcess() {
		t.Error("second connect started a worker; want it to join the first one's server")
	}
	if runs, err := List(context.Background(), second.Client); err != nil || len(runs) != 0 {
		t.Errorf("runs on the joined server: %v, %v; want none", runs, err)
	}
}
