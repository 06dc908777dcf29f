package workflows

import (
	"math"
	"time"

	"go.temporal.io/sdk/temporal"
)

// Retry is how a run's segments are retried after a failure that is not the user's (a
// lost worker, a crash, a network fault), as `herd run --max-attempts --retry-initial
// --retry-max` set it; recorded in the workflow's input, so that every execution and
// replay applies the same. A user error, a divergence or a panic is never retried: a
// retry would only repeat it. Zero fields take the defaults documented on each.
type Retry struct {
	// MaxAttempts per segment (a first try and its retries) before the run waits as
	// failed, for `herd resume`; 0 = 5, < 0 = unlimited (a spot fleet that comes back).
	MaxAttempts int32
	// RetryInitial is the wait before the first retry, doubled after each failure up to
	// RetryMax; 0 = 1 s and 1 min.
	RetryInitial time.Duration
	RetryMax     time.Duration
}

// DefaultMaxAttempts is a segment's attempts when Retry.MaxAttempts is 0.
const DefaultMaxAttempts = 5

// attempts is the most attempts of a segment, math.MaxInt32 for unlimited.
func (r Retry) attempts() int32 {
	switch {
	case r.MaxAttempts < 0:
		return math.MaxInt32
	case r.MaxAttempts == 0:
		return DefaultMaxAttempts
	}
	return r.MaxAttempts
}

// backoff is the first wait between attempts and the longest.
func (r Retry) backoff() (first, most time.Duration) {
	first, most = r.RetryInitial, r.RetryMax
	if first <= 0 {
		first = time.Second
	}
	if most <= 0 {
		most = time.Minute
	}
	return first, max(first, most)
}

// policy is the server's retry policy of a one-rank segment (the workflow retries a
// group's, with the same numbers: see groupSegment).
func (r Retry) policy() *temporal.RetryPolicy {
	first, most := r.backoff()
	attempts := r.attempts()
	if attempts == math.MaxInt32 {
		attempts = 0 // the server's unlimited
	}
	return &temporal.RetryPolicy{
		InitialInterval:        first,
		BackoffCoefficient:     2,
		MaximumInterval:        most,
		MaximumAttempts:        attempts,
		NonRetryableErrorTypes: []string{ErrUser},
	}
}
