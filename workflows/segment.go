package workflows

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/trainer"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/collective"
	"github.com/herdml/herd/trainer/metrics"
)

// Heartbeat is what a segment reports while it trains, and what its retry reads back to
// know where the previous attempt got.
type Heartbeat struct {
	Step       int64   `json:"step"` // steps done, committed or not
	Loss       float64 `json:"loss"`
	TokensPerS float64 `json:"tokens_per_s"` // the run's, all ranks together
	Checkpoint string  `json:"checkpoint"`   // newest checkpoint this attempt (or an earlier one) committed
	Committed  int64   `json:"committed"`    // its step
}

// Activities holds what a worker's segments need; the worker builds it once and
// registers its methods.
type Activities struct {
	// Backend runs the kernels; nil = the CPU backend.
	Backend kernels.Backend[float32]
	// HeartbeatEvery is the heartbeat tick; 0 = a third of the activity's heartbeat
	// timeout (so that two beats may be lost before the server gives up on the worker),
	// at most a second: the reply to a beat is how a pause, stop or cancel reaches a
	// segment, so a long timeout must not make those slow.
	HeartbeatEvery time.Duration
	// Identity names this worker in results and `herd status`.
	Identity string
	// Ranks is how many ranks of data-parallel groups this worker takes at once (see
	// ReserveRank); 0 = none.
	Ranks int
	// Segments is how many one-rank segments (runs, sweep trials) this worker trains at
	// once; 0 = one. A segment's kernels use every core, so more pays only where one
	// model is too small to keep the cores busy: the trials of a sweep over a small proxy.
	// The results do not depend on it.
	Segments int
	// Listen is the host its collective listeners bind; "" = 127.0.0.1. Any other
	// address needs Collective.TLS and Collective.Token.
	Listen string
	// Collective configures the groups its ranks join (deadline, wire format, TLS).
	Collective collective.Options
	// Metrics, if set, records every step its segments train, under the run's name and
	// the rank (0 for a one-rank run).
	Metrics *metrics.Recorder
	// BeforeStep, if set, is every segment's trainer.Options.BeforeStep: tests hold a
	// segment at a chosen step with it, or slow every step down.
	BeforeStep func(ctx context.Context, run string, done int64)
	// Stopped, if set, is called when the worker's shutdown (a SIGTERM: see
	// internal/preempt) stopped a segment of run before its end, once the step it stopped
	// at is committed: the CLI says where each run stands. The run goes on from res.Step
	// on whichever worker takes its next segment.
	Stopped func(run string, res SegmentResult)

	slots     slots
	rankQueue string // this worker's own queue, where its reserved ranks' segments run
}

// TrainSegment trains from the newest committed checkpoint (or the initialisation) up to
// in.Until and commits a checkpoint there. It heartbeats {step, loss, tokens/s} on a tick.
// Cancellation (pause, stop) and worker shutdown stop it at the next step boundary; it then
// commits a checkpoint of that step before returning, so no finished step is lost. A user
// error or divergence is returned as a non-retryable ErrUser application error, a panic
// as a non-retryable ErrPanic one.
func (a *Activities) TrainSegment(ctx context.Context, in SegmentInput) (_ SegmentResult, err error) {
	defer recoverPanic(&err)
	return a.train(ctx, in, nil)
}

// TrainRank trains one rank of a group from the listener that ReserveRank opened for it.
// Cancellation (pause, stop, a failed sibling) and worker shutdown stop every rank of the
// group after the same step, which they then commit together, as one rank's segment does.
// The group stays open meanwhile: a rank waiting on a dead or stalled peer gets the
// collective's PeerError within its deadline (at once when the peer's process died, as
// its connections close), and returns where the group last committed.
func (a *Activities) TrainRank(ctx context.Context, in RankSegmentInput) (_ SegmentResult, err error) {
	defer recoverPanic(&err)
	lis := a.take(slotKey(in.Group, in.Rank))
	if lis == nil {
		return SegmentResult{}, fmt.Errorf("worker %s holds no reservation for rank %d of %s (restarted, or the reservation expired)", a.Identity, in.Rank, in.Group)
	}
	defer a.release()
	opts := a.Collective
	opts.Token = groupToken(in.Token, opts.Token)
	log := activity.GetLogger(ctx)
	opts.Refused = func(remote string) {
		log.Warn("collective: refused a connection with a wrong or missing token", "rank", in.Rank, "remote", remote)
	}
	g, err := collective.New(lis, in.Rank, in.Addrs, opts)
	if err != nil {
		lis.Close()
		return SegmentResult{}, classify(err)
	}
	defer leave(g)
	return a.train(ctx, in.SegmentInput, g)
}

func (a *Activities) train(ctx context.Context, in SegmentInput, g *collective.Group) (SegmentResult, error) {
	info := activity.GetInfo(ctx)
	log := activity.GetLogger(ctx)
	rank, ranks := 0, 1
	if g != nil {
		rank, ranks = g.Rank(), g.World()
	}
	var prev Heartbeat
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &prev); err != nil {
			log.Warn("unreadable heartbeat details of the previous attempt", "error", err)
		}
	}

	// hb is what the ticker reports: the previous attempt's details until this attempt
	// knows better, so that an attempt that dies while loading does not erase them.
	var (
		mu       sync.Mutex
		hb       = prev
		warnings []string
	)
	snapshot := func() Heartbeat { mu.Lock(); defer mu.Unlock(); return hb }
	every := a.HeartbeatEvery
	if every <= 0 {
		every = min(max(info.HeartbeatTimeout/3, 100*time.Millisecond), time.Second)
	}
	// The trainer gets its own context: cancellation by the server and the worker's
	// shutdown both end it at a step boundary, and then this segment still commits.
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	var shutdown atomic.Bool // the worker's shutdown, not the server, stopped the trainer
	done := make(chan struct{})
	var beats sync.WaitGroup
	beats.Add(1)
	// The ticker runs from before the model is built until the last checkpoint is
	// written, so that neither loading nor saving a large model looks like a dead worker.
	go func() {
		defer beats.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		cancelled, stopping := ctx.Done(), activity.GetWorkerStopChannel(ctx)
		for {
			select {
			case <-done:
				return
			case <-cancelled:
				stopRun()
				cancelled = nil
			case <-stopping:
				shutdown.Store(true)
				stopRun()
				stopping = nil
			case <-tick.C:
				if ctx.Err() == nil { // the server answers a cancelled attempt's beats with an error
					activity.RecordHeartbeat(ctx, snapshot())
				}
			}
		}
	}()
	defer func() { close(done); beats.Wait() }()

	opts := trainer.Options{
		Group:      g,
		Backend:    a.Backend,
		BeforeStep: a.BeforeStep,
		Changes:    in.Changes,
		Warn: func(w string) {
			log.Warn(w)
			warnings = append(warnings, w)
		},
		Progress: func(st trainer.Stats) {
			a.Metrics.Observe(in.Config.Name, rank, st)
			mu.Lock()
			defer mu.Unlock()
			// The ranks of a group step together on batches of one shape: the run's
			// tokens/s is this rank's times their number.
			hb.Step, hb.Loss, hb.TokensPerS = st.Step, st.Loss, st.TokensPerS*float64(ranks)
			if st.Checkpoint != "" {
				hb.Checkpoint, hb.Committed = st.Checkpoint, st.Step
			}
		},
	}
	tr, err := trainer.New(in.Config, opts)
	if err != nil {
		return SegmentResult{}, classify(err)
	}
	// Closing releases the data files and, on rank 0, the run folder's lock, before the
	// workflow hears of the result and schedules the next segment.
	defer tr.Close()
	name, err := tr.Resume("")
	if err != nil {
		return SegmentResult{}, classify(err)
	}
	if prev.Committed > tr.StepCount() {
		opts.Warn(fmt.Sprintf("attempt %d committed %s, which no longer verifies; attempt %d resumes from %q",
			info.Attempt-1, prev.Checkpoint, info.Attempt, name))
	}
	mu.Lock()
	hb = Heartbeat{Step: tr.StepCount(), Checkpoint: name, Committed: tr.StepCount()}
	if prev.Step == hb.Step {
		// The previous attempt got exactly this far (it died after committing): its loss
		// is this step's, and stays the run's loss if nothing is left to train.
		hb.Loss, hb.TokensPerS = prev.Loss, prev.TokensPerS
	}
	mu.Unlock()
	activity.RecordHeartbeat(ctx, snapshot())

	// Interrupted, Run returns context.Canceled; a group's ranks then all stopped after
	// the same step (trainer.Run agrees on it), whichever rank was told.
	_, err = tr.Run(runCtx, in.Until)
	switch {
	case err != nil && g != nil && !errors.Is(err, context.Canceled) && !usererr.Is(err) && !errors.Is(err, collective.ErrBadToken):
		// A rank whose peer failed: the workflow learns which step the group committed.
		last := snapshot()
		return SegmentResult{}, temporal.NewApplicationError(err.Error(), "RankError", SegmentResult{
			Step: last.Committed, Loss: last.Loss, Checkpoint: last.Checkpoint, Dir: runDir(tr), Worker: a.Identity})
	case err != nil && !errors.Is(err, context.Canceled):
		return SegmentResult{}, classify(err)
	}
	// Run is over: only this goroutine writes hb from here on.
	if last := snapshot(); tr.StepCount() > last.Committed {
		// Interrupted between checkpoints: commit now. On a group every rank is here at
		// the same step, and Save is collective: rank 0 writes once all ranks agree.
		name, err := tr.Save()
		if err != nil {
			return SegmentResult{}, classify(err)
		}
		mu.Lock()
		hb.Checkpoint, hb.Committed = name, tr.StepCount()
		mu.Unlock()
	}
	end := snapshot()
	res := SegmentResult{
		Step: end.Committed, Loss: end.Loss, TokensPerS: end.TokensPerS,
		Checkpoint: end.Checkpoint, Dir: runDir(tr),
		Worker: a.Identity, Warnings: warnings,
	}
	if ctx.Err() != nil {
		// Cancelled by the workflow: the details tell it where the run now stands.
		return res, temporal.NewCanceledError(res)
	}
	activity.RecordHeartbeat(ctx, end)
	if shutdown.Load() && res.Step < in.Until && a.Stopped != nil {
		a.Stopped(in.Config.Name, res)
	}
	return res, nil
}

// leave closes g, if any, without waiting: calls in flight fail at once, while Close
// itself may wait up to the group's deadline to deliver frames to a dead peer.
func leave(g *collective.Group) {
	if g != nil {
		go g.Close()
	}
}

// classify marks user errors (bad config, corrupt data, divergence) and refused collective
// tokens non-retryable: a retry would fail the same way. They are "benign" so that the
// SDK does not log them as worker errors; the run's own output says what went wrong.
// Everything else is retried from the last checkpoint.
//
// A run folder locked by another owner (checkpoint.ErrLocked) is a user error for `herd
// train` but is retried here: the holder is most often this segment's previous attempt,
// still committing its checkpoint after a cancel or timeout, or a rank 0 on a worker that
// lost the server and has not yet noticed; both let go within seconds, and the retry
// policy's backoff waits for them. A real second owner (`herd train` on the same folder)
// exhausts the retries, and the run then waits, failed but resumable, with the message
// naming the holder.
func classify(err error) error {
	if errors.Is(err, collective.ErrBadToken) {
		return temporal.NewApplicationErrorWithOptions(
			err.Error()+"; every worker of a run needs the same $HERD_COLLECTIVE_TOKEN (or none)", ErrBadToken,
			temporal.ApplicationErrorOptions{NonRetryable: true, Category: temporal.ApplicationErrorCategoryBenign})
	}
	if errors.Is(err, checkpoint.ErrLocked) {
		return temporal.NewApplicationErrorWithOptions(err.Error(), ErrLocked, temporal.ApplicationErrorOptions{
			Category: temporal.ApplicationErrorCategoryBenign,
		})
	}
	if usererr.Is(err) {
		return temporal.NewApplicationErrorWithOptions(err.Error(), ErrUser, temporal.ApplicationErrorOptions{
			NonRetryable: true,
			Category:     temporal.ApplicationErrorCategoryBenign,
		})
	}
	return err
}

// recoverPanic turns a panic of the segment's goroutine into a non-retryable ErrPanic
// error that carries the panic's value and the frame that panicked. The SDK would
// recover the panic too, but as a retryable PanicError, logged with its whole stack:
// training is deterministic, so every attempt would panic the same way and the run would
// only wait as failed after its retries. (A panic on another goroutine still ends the
// process.)
func recoverPanic(err *error) {
	p := recover()
	if p == nil {
		return
	}
	*err = temporal.NewApplicationErrorWithOptions(fmt.Sprintf("segment panicked at %s: %v (a bug in herd; please report it)", panicFrame(), p),
		ErrPanic, temporal.ApplicationErrorOptions{NonRetryable: true})
}

// panicFrame names the function, file and line that panicked, from inside the deferred
// call that recovered: the first frame below runtime.gopanic outside the runtime (an
// index out of range panics in runtime.goPanicIndex, a bad make in runtime.makeslice).
func panicFrame() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	panicking := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			panicking = true
		case panicking && !strings.HasPrefix(f.Function, "runtime."):
			return fmt.Sprintf("%s (%s:%d)", f.Function, filepath.Base(f.File), f.Line)
		}
		if !more {
			return "an unknown frame"
		}
	}
}

// runDir is the folder or bucket prefix of tr's checkpoints as the run's Progress records
// it: a folder as an absolute path, so that what reads it from another directory (`herd
// status`, `herd metrics`, the dashboard of a `herd server` started elsewhere) finds it.
func runDir(tr *trainer.Trainer) string {
	d := tr.CheckpointDir()
	if storage.IsURL(d) {
		return d
	}
	if abs, err := filepath.Abs(d); err == nil {
		return abs
	}
	return d
}
