package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/preempt"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer"
	"github.com/herdml/herd/trainer/checkpoint"
)

// graceFlag is --grace of the commands that train (train, run, worker): how long the
// first SIGTERM or SIGINT leaves them to checkpoint and exit (see internal/preempt).
type graceFlag struct{ d time.Duration }

func (g *graceFlag) register(c *cobra.Command) {
	c.Flags().DurationVar(&g.d, "grace", preempt.DefaultGrace,
		"after SIGTERM or Ctrl-C, how long to finish the step, checkpoint and exit 0; past it, or on a second signal, exit 1 at once")
}

// check refuses a --grace that leaves no time: before the command does anything.
func (g *graceFlag) check() error {
	if g.d <= 0 {
		return usererr.New("--grace", "%s; give a positive duration, such as 30s", g.d)
	}
	return nil
}

// watch starts watching for the signals (see preempt.Watch).
func (g *graceFlag) watch(c *cobra.Command, late func() string) *preempt.Watcher {
	return preempt.Watch(c.ErrOrStderr(), g.d, late)
}

// checkpointStop commits the step that a trainer stopped by a signal is at, unless the
// newest checkpoint (of step committed) already holds it, and returns that checkpoint's
// name; "" when it stopped before training anything.
func checkpointStop(tr *trainer.Trainer, committed int64) (string, error) {
	switch {
	case tr.StepCount() > committed:
		return tr.Save()
	case committed > 0:
		return checkpoint.Name(committed), nil
	}
	return "", nil
}
