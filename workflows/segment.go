package workflows

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/trainer"
)

// Heartbeat is what a segment reports while it trains, and what its retry reads back to
// know where the previous attempt got.
type Heartbeat struct {
	Step       int64   `json:"step"` // steps done, committed or not
	Loss       float64 `json:"loss"`
	TokensPerS float64 `json:"tokens_per_s"`
	Checkpoint string  `json:"checkpoint"` // newest checkpoint this attempt (or an earlier one) committed
	Committed  int64   `json:"committed"`  // its step
}

// Activities holds what a worker's segments need; the worker builds it once and
// registers its methods.
type Activities struct {
	// Backend runs the kernels; nil = the CPU backend.
	Backend kernels.Backend[float32]
	// HeartbeatEvery is the heartbeat tick; 0 = a third of the activity's heartbeat
	// timeout, so that two beats may be lost before the server gives up on the worker.
	HeartbeatEvery time.Duration
	// Identity names this worker in results and `herd status`.
	Identity string
}

// TrainSegment trains from the newest committed checkpoint (or the initialisation) up to
// in.Until and commits a checkpoint there. It heartbeats {step, loss, tokens/s} on a tick.
// Cancellation (pause, stop) and worker shutdown stop it at the next step boundary; it then
// commits a checkpoint of that step before returning, so no finished step is lost. A user
// error or divergence is returned as a non-retryable ErrUser application error.
func (a *Activities) TrainSegment(ctx context.Context, in SegmentInput) (SegmentResult, error) {
	info := activity.GetInfo(ctx)
	log := activity.GetLogger(ctx)
	var prev Heartbeat
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &prev); err != nil {
			log.Warn("unreadable heartbeat details of the previous attempt", "error", err)
		}
	}

	var (
		mu       sync.Mutex
		hb       Heartbeat
		warnings []string
	)
	opts := trainer.Options{
		Backend: a.Backend,
		Warn: func(w string) {
			log.Warn(w)
			warnings = append(warnings, w)
		},
		Progress: func(st trainer.Stats) {
			mu.Lock()
			defer mu.Unlock()
			hb.Step, hb.Loss, hb.TokensPerS = st.Step, st.Loss, st.TokensPerS
			if st.Checkpoint != "" {
				hb.Checkpoint, hb.Committed = st.Checkpoint, st.Step
			}
		},
	}
	tr, err := trainer.New(in.Config, opts)
	if err != nil {
		return SegmentResult{}, classify(err)
	}
	name, err := tr.Resume("")
	if err != nil {
		return SegmentResult{}, classify(err)
	}
	hb.Step, hb.Checkpoint, hb.Committed = tr.StepCount(), name, tr.StepCount()
	if prev.Committed > hb.Committed {
		opts.Warn(fmt.Sprintf("attempt %d committed %s, which no longer verifies; attempt %d resumes from %q",
			info.Attempt-1, prev.Checkpoint, info.Attempt, name))
	}
	activity.RecordHeartbeat(ctx, hb)

	every := a.HeartbeatEvery
	if every <= 0 {
		every = max(info.HeartbeatTimeout/3, 100*time.Millisecond)
	}
	// The trainer gets its own context: cancellation by the server and the worker's
	// shutdown both end it at a step boundary, and then this segment still commits.
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	done := make(chan struct{})
	var beats sync.WaitGroup
	beats.Add(1)
	go func() {
		defer beats.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				stopRun()
				return
			case <-activity.GetWorkerStopChannel(ctx):
				stopRun()
				return
			case <-tick.C:
				mu.Lock()
				beat := hb
				mu.Unlock()
				activity.RecordHeartbeat(ctx, beat)
			}
		}
	}()
	_, err = tr.Run(runCtx, in.Until)
	close(done)
	beats.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return SegmentResult{}, classify(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if tr.StepCount() > hb.Committed { // interrupted between checkpoints: commit now
		name, err := tr.Save()
		if err != nil {
			return SegmentResult{}, classify(err)
		}
		hb.Checkpoint, hb.Committed = name, tr.StepCount()
	}
	res := SegmentResult{
		Step: hb.Committed, Loss: hb.Loss, TokensPerS: hb.TokensPerS,
		Checkpoint: hb.Checkpoint, Dir: tr.CheckpointDir(),
		Worker: a.Identity, Warnings: warnings,
	}
	if ctx.Err() != nil {
		// Cancelled by the workflow: the details tell it where the run now stands.
		return res, temporal.NewCanceledError(res)
	}
	activity.RecordHeartbeat(ctx, hb)
	return res, nil
}

// classify marks user errors (bad config, corrupt data, divergence) non-retryable: a retry
// would fail the same way. They are "benign" so that the SDK does not log them as worker
// errors; the run's own output says what went wrong. Everything else is retried from the
// last checkpoint.
func classify(err error) error {
	if usererr.Is(err) {
		return temporal.NewApplicationErrorWithOptions(err.Error(), ErrUser, temporal.ApplicationErrorOptions{
			NonRetryable: true,
			Category:     temporal.ApplicationErrorCategoryBenign,
		})
	}
	return err
}
