// Package stephook is the training step hook that herd's tests install through
// trainer.Options.BeforeStep (workflows.Activities.BeforeStep), so that no test depends
// on how fast the host trains. It does two things, both set up from the environment,
// which the helper processes a test starts (workers, `herd run`) inherit:
//
//	HERD_TEST_STEP_DELAY=d  every step first waits d (a Go duration, e.g. 50ms): the
//	                        trainer made artificially slower
//	HERD_TEST_HOLDS=dir     a run is held before a named step while a hold file in dir
//	                        says so (see Hold): "mid-run" made certain, not hoped for
//
// Nothing in herd's commands sets either: only test binaries call FromEnv.
package stephook

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The environment variables FromEnv reads.
const (
	DelayEnv = "HERD_TEST_STEP_DELAY"
	HoldsEnv = "HERD_TEST_HOLDS"
)

// Hook is the signature of trainer.Options.BeforeStep: called before each step with the
// run's name and the steps done so far.
type Hook = func(ctx context.Context, run string, done int64)

// poll is how often a held trainer looks whether its hold file is still there.
const poll = 10 * time.Millisecond

// FromEnv returns the hook that HERD_TEST_STEP_DELAY and HERD_TEST_HOLDS ask for, or nil
// when neither is set.
func FromEnv() (Hook, error) {
	var delay time.Duration
	if s := os.Getenv(DelayEnv); s != "" {
		var err error
		if delay, err = time.ParseDuration(s); err != nil || delay < 0 {
			return nil, fmt.Errorf("%s=%q: want a duration such as 50ms", DelayEnv, s)
		}
	}
	dir := os.Getenv(HoldsEnv)
	if delay == 0 && dir == "" {
		return nil, nil
	}
	return func(ctx context.Context, run string, done int64) {
		if delay > 0 && !sleep(ctx, delay) {
			return
		}
		if dir != "" {
			wait(ctx, holdFile(dir, run, done))
		}
	}, nil
}

// Hold makes every trainer of run (each rank of it, in any process whose hook reads dir)
// wait before training step done+1, until release is called or the trainer's context
// ends: a pause, stop, cancellation or worker shutdown still reaches a held run, which
// then stops after step done. Held reports when a trainer got there. A run resumed after
// the release trains on.
func Hold(dir, run string, done int64) (release func(), err error) {
	p := holdFile(dir, run, done)
	release = func() {
		_ = os.Remove(p)
		_ = os.Remove(p + ".held")
	}
	release() // an earlier hold's sign (a test run again with -count) is not this one's
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		return nil, err
	}
	return release, nil
}

// Stick is Hold for a step that hangs: the trainer waits through a pause, stop,
// cancellation or shutdown too, until release is called, so that a test sees what a
// command does when it cannot stop in time (its --grace running out).
func Stick(dir, run string, done int64) (release func(), err error) {
	release, err = Hold(dir, run, done)
	if err != nil {
		return nil, err
	}
	return release, os.WriteFile(holdFile(dir, run, done), []byte(stuck), 0o644)
}

// stuck is the content of Stick's hold file.
const stuck = "stuck"

// Held reports whether a trainer of run has reached the hold before step done+1, until
// the hold is released.
func Held(dir, run string, done int64) bool {
	_, err := os.Stat(holdFile(dir, run, done) + ".held")
	return err == nil
}

func holdFile(dir, run string, done int64) string {
	return filepath.Join(dir, fmt.Sprintf("%s@%d", run, done))
}

// wait holds while the hold file p exists and ctx is not done (a Stick's: whatever ctx
// does), after leaving p.held as the sign that a trainer got there.
func wait(ctx context.Context, p string) {
	b, err := os.ReadFile(p)
	if err != nil {
		return
	}
	if string(b) == stuck {
		ctx = context.Background()
	}
	_ = os.WriteFile(p+".held", nil, 0o644)
	for {
		if _, err := os.Stat(p); err != nil || !sleep(ctx, poll) {
			return
		}
	}
}

// sleep waits d, or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
