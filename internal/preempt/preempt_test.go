package preempt

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// watcher is a Watcher fed by the test instead of the process's signals; exits reports
// the status of each forced exit.
func watcher(t *testing.T, grace time.Duration) (x *Watcher, out *syncBuffer, exits chan int) {
	out, exits = &syncBuffer{}, make(chan int, 2)
	x = newWatcher(out, grace, func() string { return "resume with `herd train run.yaml`" }, func(code int) { exits <- code })
	go x.watch()
	t.Cleanup(x.Done)
	return x, out, exits
}

func TestFirstSignalStopsAndDoneEndsTheWatch(t *testing.T) {
	x, out, exits := watcher(t, time.Hour)
	if x.Signal() != nil || x.Context().Err() != nil {
		t.Fatal("stopped before any signal")
	}
	x.sigs <- syscall.SIGTERM
	<-x.Context().Done() // the command stops at its next step boundary
	if x.Signal() != syscall.SIGTERM {
		t.Errorf("Signal() = %v, want SIGTERM", x.Signal())
	}
	for !strings.Contains(out.String(), "\n") { // printed after the cancel
		time.Sleep(time.Millisecond)
	}
	if want := "herd: SIGTERM: checkpointing after the step in flight (--grace 1h0m0s); a second signal exits at once\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	x.Done()
	x.sigs <- syscall.SIGTERM // after Done, nobody forces an exit
	x.quit("late")
	select {
	case code := <-exits:
		t.Fatalf("exit %d after Done; printed %q", code, out.String())
	default:
	}
}

func TestGraceExpiredExits(t *testing.T) {
	x, out, exits := watcher(t, time.Millisecond)
	x.sigs <- os.Interrupt
	if code := <-exits; code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	for _, want := range []string{"SIGINT", "no checkpoint within the grace period (--grace 1ms)", "resume with `herd train run.yaml`"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("message %q does not say %q", out.String(), want)
		}
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	x, out, exits := watcher(t, time.Hour)
	x.sigs <- syscall.SIGTERM
	x.sigs <- syscall.SIGTERM
	if code := <-exits; code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if want := "\nherd: second SIGTERM: exiting at once, without a checkpoint; resume with"; !strings.Contains(out.String(), want) {
		t.Errorf("message %q, want it to hold %q", out.String(), want)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
