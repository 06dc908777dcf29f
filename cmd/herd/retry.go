package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/workflows"
)

// retryFlags are --max-attempts, --retry-initial and --retry-max of `herd run` and `herd
// sweep`: how a run's segments are retried after a failure that is not the user's
// (workflows.Retry). They are recorded in the workflow's input when the run starts; a
// launch that attaches to a running run keeps the run's own.
type retryFlags struct {
	attempts      int32
	initial, most time.Duration
}

func (f *retryFlags) register(c *cobra.Command) {
	c.Flags().Int32Var(&f.attempts, "max-attempts", workflows.DefaultMaxAttempts,
		"attempts of a segment (a first try and its retries) before the run waits as failed for `herd resume`; 0 = unlimited; a user error is never retried")
	c.Flags().DurationVar(&f.initial, "retry-initial", time.Second, "wait before a failed segment's first retry, doubled after each failure")
	c.Flags().DurationVar(&f.most, "retry-max", time.Minute, "longest wait between a segment's attempts")
}

// retry checks the flags and returns them as the workflow's Retry.
func (f *retryFlags) retry() (workflows.Retry, error) {
	switch {
	case f.attempts < 0:
		return workflows.Retry{}, usererr.New("--max-attempts", "%d; give 0 (unlimited) or more", f.attempts)
	case f.initial <= 0:
		return workflows.Retry{}, usererr.New("--retry-initial", "%s; give a positive duration, such as 1s", f.initial)
	case f.most < f.initial:
		return workflows.Retry{}, usererr.New("--retry-max", "%s is shorter than --retry-initial %s", f.most, f.initial)
	}
	r := workflows.Retry{MaxAttempts: f.attempts, RetryInitial: f.initial, RetryMax: f.most}
	if f.attempts == 0 {
		r.MaxAttempts = -1 // the workflow's unlimited (its 0 is the default, 5)
	}
	return r, nil
}
