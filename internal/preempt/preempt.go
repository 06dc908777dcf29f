// Package preempt is how herd's long-running commands (`herd train`, `herd worker`,
// `herd run`) stop when their machine is taken away, as a spot or preemptible instance
// is: told by SIGTERM (or Ctrl-C, SIGINT), they stop at the next step boundary, commit a
// checkpoint of that step and exit 0, so that no finished step is lost.
//
// The rules, the same for every command:
//
//   - The first signal cancels Watcher.Context, and says so on one line. A step in
//     flight finishes (its micro-batches are never cut); the command then checkpoints
//     and calls Done.
//   - From that signal the command has the grace period. A cloud gives a fixed notice
//     (30 s on Kubernetes by default, 30 s to 2 min on spot instances) before SIGKILL: a
//     command still writing when the grace ends exits with status 1 and says so, rather
//     than be killed in silence. A checkpoint is committed by a rename when whole, so the
//     previous one stays the newest valid one.
//   - A second signal exits at once, status 1, for a user who will not wait.
package preempt

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// DefaultGrace is the grace period of the commands' --grace flag: the notice Kubernetes
// gives a pod before SIGKILL.
const DefaultGrace = 30 * time.Second

// Watcher watches for the signals that stop a command; see the package comment.
type Watcher struct {
	ctx    context.Context
	cancel context.CancelFunc
	w      io.Writer
	grace  time.Duration
	late   func() string
	exit   func(code int)
	sigs   chan os.Signal
	done   chan struct{}
	once   sync.Once
	ending sync.Mutex // held by Done and by a forced exit: one of them wins
	mu     sync.Mutex
	got    os.Signal // the first signal, nil before it
}

// Watch starts watching SIGTERM and SIGINT. On an exit forced by the grace period or a
// second signal it prints one line on w, ending with what late returns: where the
// command resumes from (late is called then, from another goroutine).
func Watch(w io.Writer, grace time.Duration, late func() string) *Watcher {
	x := newWatcher(w, grace, late, os.Exit)
	signal.Notify(x.sigs, syscall.SIGTERM, os.Interrupt)
	go x.watch()
	return x
}

func newWatcher(w io.Writer, grace time.Duration, late func() string, exit func(int)) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	return &Watcher{ctx: ctx, cancel: cancel, w: w, grace: grace, late: late, exit: exit,
		sigs: make(chan os.Signal, 2), done: make(chan struct{})}
}

// Context is cancelled by the first signal: the command stops at its next step boundary.
func (x *Watcher) Context() context.Context { return x.ctx }

// Signal is the first signal received, nil when none was.
func (x *Watcher) Signal() os.Signal {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.got
}

// Done ends the watch: the command has stopped (checkpointed) or finished. A signal after
// it is the default one's: the process ends.
func (x *Watcher) Done() {
	x.once.Do(func() {
		x.ending.Lock()
		defer x.ending.Unlock()
		signal.Stop(x.sigs)
		close(x.done)
		x.cancel()
	})
}

func (x *Watcher) watch() {
	var expired <-chan time.Time
	for {
		select {
		case <-x.done:
			return
		case s := <-x.sigs:
			x.mu.Lock()
			first := x.got == nil
			if first {
				x.got = s
			}
			x.mu.Unlock()
			if !first {
				x.quit(fmt.Sprintf("second %s: exiting at once, without a checkpoint", Name(s)))
				return
			}
			x.cancel()
			fmt.Fprintf(x.w, "herd: %s: checkpointing after the step in flight (--grace %s); a second signal exits at once\n", Name(s), x.grace)
			t := time.NewTimer(x.grace)
			defer t.Stop()
			expired = t.C
		case <-expired:
			x.quit(fmt.Sprintf("%s: no checkpoint within the grace period (--grace %s): exiting", Name(x.Signal()), x.grace))
			return
		}
	}
}

// quit exits with status 1 unless Done came first.
func (x *Watcher) quit(msg string) {
	x.ending.Lock()
	defer x.ending.Unlock()
	select {
	case <-x.done:
		return
	default:
	}
	fmt.Fprintf(x.w, "herd: %s; %s\n", msg, x.late())
	x.exit(1)
}

// Name is a signal's usual name, as users and `kill -l` spell it.
func Name(s os.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case os.Interrupt:
		return "SIGINT"
	}
	return s.String()
}
