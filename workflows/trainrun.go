// Package workflows runs training as a durable Temporal workflow. TrainRun drives a run
// through TrainSegment activities, each of which trains many steps through package trainer
// and ends with a committed checkpoint; a dead worker is noticed by its missing heartbeat
// and the segment is retried from the last committed checkpoint, so a crash costs at most
// one segment's progress and never changes the result.
//
// The workflow is thin and deterministic: it holds only small state (step, checkpoint
// name, metrics) and decides what runs next. Tensors never pass through Temporal.
package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/herdml/herd/trainer/config"
)

// Names shared by the workflow, its workers and its clients. Changing one breaks running
// workflows; the replay test guards them.
const (
	TaskQueue       = "herd"         // default task queue of workflows and segments
	WorkflowName    = "TrainRun"     // workflow type
	SegmentActivity = "TrainSegment" // activity type
	QueryProgress   = "progress"     // query: returns Progress
	UpdatePause     = "pause"        // update: pause after checkpointing the current step
	UpdateResume    = "resume"       // update: continue a paused or failed run
	UpdateStop      = "stop"         // update: checkpoint and end the run
	// ErrUser is the application error type of a user's mistake or a diverged run:
	// never retried, and the CLI exits with status 2 on it.
	ErrUser = "UserError"
	// ErrLocked is the application error type of a segment whose run folder another
	// owner holds (checkpoint.ErrLocked): retried, since that owner is most often the
	// segment's previous attempt, still stopping.
	ErrLocked = "RunFolderLocked"
	// ErrAttemptGone is the application error type with which `herd resume` fails a
	// segment attempt whose process is known dead, so that it is retried at once.
	ErrAttemptGone = "AttemptGone"
	// ErrPanic is the application error type of a segment that panicked: a bug in herd,
	// not the user's mistake (the CLI exits with status 1), but never retried either,
	// since training is deterministic and every retry would panic the same way.
	ErrPanic = "Panic"
	// MemoProgress is the memo key holding Progress, readable with DescribeWorkflowExecution
	// by any client even when no worker is running.
	MemoProgress = "progress"
)

// Run states, as in Progress.State and the HerdState search attribute.
const (
	StateRunning   = "running"
	StatePaused    = "paused"
	StateFailed    = "failed" // retries exhausted; waits for `herd resume`
	StateCompleted = "completed"
	StateStopped   = "stopped"
	StateError     = "error" // a user error or divergence ended the run
)

// RunInput starts a TrainRun. Zero fields take the defaults documented on each.
type RunInput struct {
	Config config.Run // validated, with absolute paths: any worker may run any segment
	// SegmentSteps is how many steps one TrainSegment trains; 0 = train.checkpoint.every
	// (or all steps when that is 0), so that segments end where `herd train` checkpoints.
	SegmentSteps int64
	// HeartbeatTimeout is how long a silent segment may go before it is retried
	// elsewhere; 0 = 30 s, which a worker sharing a busy machine with its server (the
	// embedded default) still meets, where 10 s saw heartbeats time out under load.
	HeartbeatTimeout time.Duration
	// Retry is how its segments are retried (attempts and backoff). Embedded, so that
	// inputs recorded before it carried only MaxAttempts decode the same.
	Retry
	// SegmentsPerRun bounds segments per workflow execution before ContinueAsNew; 0 = 200.
	// The server's own suggestion (history size) also triggers it.
	SegmentsPerRun int
	// SearchAttributes upserts HerdState and HerdStep; set only where they are registered
	// (the embedded server registers them; another cluster may not).
	SearchAttributes bool
	// ElasticWait, when > 0, makes a data-parallel group (parallel.data > 1) elastic: when
	// not every rank is reserved within it (a worker was lost and none has replaced it),
	// the segment trains on the largest world size that divides the global batch among the
	// ranks reserved, from the last committed checkpoint. Every segment tries the full
	// parallel.data first, so the group grows back once workers return. 0 = a group waits
	// for all its ranks, however long.
	ElasticWait time.Duration
	// Carry is the state handed over by ContinueAsNew; nil on a fresh start.
	Carry *Progress
	// Until, when > 0, ends the run in state StateRung once it has committed this step:
	// a sweep trial stops at each ASHA rung, holding no worker while the sweep decides,
	// and a later execution with a higher Until continues from that checkpoint.
	Until int64
}

// Progress is a run's state as the workflow knows it: returned by the progress query,
// kept in the memo, and returned as the workflow's result.
type Progress struct {
	Name  string  `json:"name"`
	State string  `json:"state"`
	Step  int64   `json:"step"`  // last committed step
	Steps int64   `json:"steps"` // train.steps
	Loss  float64 `json:"loss"`  // at the last committed step
	// TokensPerS is the run's training throughput over the last segment, all ranks
	// together (the heartbeats' Heartbeat.TokensPerS likewise).
	TokensPerS float64 `json:"tokens_per_s"`
	// TokensPerStep is what the run processes per optimizer step, all ranks together:
	// train.global_batch × model.seq_len. The ETA is the steps left times this over
	// the live TokensPerS.
	TokensPerStep int64  `json:"tokens_per_step"`
	Checkpoint    string `json:"checkpoint"` // newest committed checkpoint's name
	Dir           string `json:"dir"`        // folder holding the run's checkpoints
	Segments      int    `json:"segments"`   // segments completed, over all executions
	Failures      int    `json:"failures"`   // segments that exhausted their retries
	// GroupAttempt is a group's (parallel.data > 1) attempt at the segment in flight once
	// one has failed, and GroupFailure why the previous one did: the workflow, not the
	// server, retries a group, so Status shows these as its attempt and last failure.
	GroupAttempt int32    `json:"group_attempt,omitempty"`
	GroupFailure string   `json:"group_failure,omitempty"`
	Worker       string   `json:"worker"` // identity of the worker of the last segment
	Error        string   `json:"error,omitempty"`
	Warnings     []string `json:"warnings,omitempty"`
	// Lineage lists what resumes changed (train.steps, the peak LR, the schedule), each at
	// the step it took effect after: the run's history of its config, which `herd status`
	// shows and which the trainer checks a checkpoint's config against.
	Lineage []config.Change `json:"lineage,omitempty"`
	Started time.Time       `json:"started"` // workflow time of the first start
	Updated time.Time       `json:"updated"`
	// World is the number of ranks an elastic group trains on while it is shrunk below
	// parallel.data (see RunInput.ElasticWait); 0 when it trains on parallel.data.
	World int `json:"world,omitempty"`
	// Resizes are the elastic group's changes of world size, oldest first.
	Resizes []Resize `json:"resizes,omitempty"`
}

// Resize is one change of an elastic group's world size: from From to To ranks, training
// on from committed step Step, and why.
type Resize struct {
	From   int       `json:"from"`
	To     int       `json:"to"`
	Step   int64     `json:"step"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"` // workflow time
}

// SegmentInput asks a worker to train from the last committed checkpoint up to Until.
type SegmentInput struct {
	Config config.Run
	Until  int64
	// Changes is the run's lineage (Progress.Lineage): a checkpoint written before a
	// resume changed the config is accepted when it differs only by these changes.
	Changes []config.Change `json:",omitempty"`
}

// SegmentResult is where a segment stopped: Step < Until when it was interrupted (pause,
// stop, worker shutdown) after committing a checkpoint.
type SegmentResult struct {
	Step       int64
	Loss       float64
	TokensPerS float64
	Checkpoint string
	Dir        string
	Worker     string
	Warnings   []string
}

var (
	saState = temporal.NewSearchAttributeKeyKeyword("HerdState")
	saStep  = temporal.NewSearchAttributeKeyInt64("HerdStep")
)

// run is the workflow's mutable state, touched only by the workflow goroutine and its
// handlers (which Temporal runs one at a time).
type run struct {
	in     RunInput
	p      Progress
	paused bool
	stop   bool
	cancel workflow.CancelFunc // cancels the running segment; nil between segments
}

// TrainRun is the workflow: segments until train.steps, pausing, resuming and stopping on
// request, waiting for `herd resume` when a segment exhausts its retries.
func TrainRun(ctx workflow.Context, in RunInput) (Progress, error) {
	r := &run{in: in}
	if in.Carry != nil {
		r.p = *in.Carry
		r.paused = r.p.State == StatePaused
	} else {
		r.p = Progress{Name: in.Config.Name, Steps: int64(in.Config.Train.Steps), Started: workflow.Now(ctx)}
	}
	r.p.Steps = int64(in.Config.Train.Steps)
	r.p.TokensPerStep = int64(in.Config.Train.GlobalBatch) * int64(in.Config.Model.SeqLen)
	if err := r.handlers(ctx); err != nil {
		return r.p, err
	}
	if in.Carry != nil { // a new execution starts with an empty memo
		r.set(ctx, r.p.State)
	}
	segments := 0
	for {
		if err := workflow.Await(ctx, func() bool { return r.stop || (!r.paused && r.p.Error == "") }); err != nil {
			return r.p, err
		}
		switch {
		case r.stop:
			return r.finish(ctx, StateStopped)
		case r.p.Step >= r.p.Steps:
			return r.finish(ctx, StateCompleted)
		case in.Until > 0 && r.p.Step >= in.Until:
			return r.finish(ctx, StateRung)
		}
		limit := in.SegmentsPerRun
		if limit <= 0 {
			limit = 200
		}
		if segments >= limit || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return r.p, err
			}
			next := r.in // with the parallel.data a resume may have set
			carry := r.p
			next.Carry = &carry
			return r.p, workflow.NewContinueAsNewError(ctx, WorkflowName, next)
		}
		if r.p.State != StateRunning {
			r.set(ctx, StateRunning)
		}
		if err := r.segment(ctx); err != nil {
			end := ending(err)
			r.p.Error = end.Message()
			r.set(ctx, StateError)
			return r.p, temporal.NewNonRetryableApplicationError(end.Message(), end.Type(), nil)
		}
		segments++
	}
}

// segment runs one TrainSegment and folds its outcome into the state. It returns an error
// only for a user error, divergence or panic, which ends the run (see ending).
func (r *run) segment(ctx workflow.Context) error {
	seg := r.in.SegmentSteps
	if seg <= 0 {
		seg = int64(r.in.Config.Train.Checkpoint.Every)
	}
	if seg <= 0 {
		seg = r.p.Steps
	}
	hb := r.in.HeartbeatTimeout
	if hb <= 0 {
		hb = 30 * time.Second
	}
	until := min(r.p.Step+seg, r.p.Steps)
	if r.in.Until > 0 {
		until = min(until, r.in.Until)
	}
	if r.in.Config.Parallel.Data > 1 {
		return r.groupSegment(ctx, until, hb, r.in.attempts())
	}
	actx, cancel := workflow.WithCancel(ctx)
	r.cancel = cancel
	defer func() { r.cancel = nil }()
	actx = workflow.WithActivityOptions(actx, workflow.ActivityOptions{
		// A segment is minutes of work; the heartbeat, not this, detects a dead worker.
		StartToCloseTimeout: 7 * 24 * time.Hour,
		HeartbeatTimeout:    hb,
		// Cancellation (pause, stop) waits for the segment to commit its checkpoint.
		WaitForCancellation: true,
		RetryPolicy:         r.in.policy(),
	})
	var res SegmentResult
	err := workflow.ExecuteActivity(actx, SegmentActivity, r.segmentInput(until)).Get(ctx, &res)
	var canceled *temporal.CanceledError
	switch {
	case err == nil:
		r.apply(res)
	case errors.As(err, &canceled):
		// Paused or stopped: the segment reports where it committed in the error details.
		if canceled.HasDetails() && canceled.Details(&res) == nil {
			r.apply(res)
		}
	case ending(err) != nil:
		return err
	default:
		r.p.Failures++
		r.p.Error = fmt.Sprintf("segment to step %d failed after %d attempts: %v", until, r.in.attempts(), err)
		r.set(ctx, StateFailed)
		return nil
	}
	r.set(ctx, r.p.State) // the new step, for clients without a worker
	return nil
}

// segmentInput asks for the run's next segment, up to step until.
func (r *run) segmentInput(until int64) SegmentInput {
	return SegmentInput{Config: r.in.Config, Until: until, Changes: r.p.Lineage}
}

// ending returns the failure inside err that ends the run instead of failing the
// segment, nil when there is none: a user error or a panic, which a retry would only
// repeat.
func ending(err error) *temporal.ApplicationError {
	var app *temporal.ApplicationError
	if errors.As(err, &app) && (app.Type() == ErrUser || app.Type() == ErrPanic) {
		return app
	}
	return nil
}

func (r *run) apply(res SegmentResult) {
	if res.Step > r.p.Step { // a segment that trained nothing has no loss to report
		r.p.Loss, r.p.TokensPerS = res.Loss, res.TokensPerS
	}
	r.p.Step = res.Step
	r.p.Checkpoint, r.p.Dir, r.p.Worker = res.Checkpoint, res.Dir, res.Worker
	r.p.Warnings = append(r.p.Warnings, res.Warnings...)
	r.p.Segments++
}

// set records a state change where clients can see it without a worker: the memo, and
// the search attributes where registered.
func (r *run) set(ctx workflow.Context, state string) {
	r.p.State = state
	r.p.Updated = workflow.Now(ctx)
	// Both calls only record a command; failing to encode Progress would be a bug.
	if err := workflow.UpsertMemo(ctx, map[string]any{MemoProgress: r.p}); err != nil {
		panic(err)
	}
	if r.in.SearchAttributes {
		if err := workflow.UpsertTypedSearchAttributes(ctx, saState.ValueSet(state), saStep.ValueSet(r.p.Step)); err != nil {
			panic(err)
		}
	}
}

func (r *run) finish(ctx workflow.Context, state string) (Progress, error) {
	r.set(ctx, state)
	err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	return r.p, err
}

// handlers registers the progress query and the pause, resume and stop updates. Pause and
// stop cancel the running segment, which commits a checkpoint of the step it is on, and
// reply once it has.
func (r *run) handlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (Progress, error) { return r.p, nil }); err != nil {
		return err
	}
	ended := func() error {
		if r.stop || r.p.State == StateCompleted {
			return fmt.Errorf("run %s has ended (%s)", r.p.Name, r.p.State)
		}
		return nil
	}
	for _, u := range []struct {
		name string
		do   func(workflow.Context)
	}{
		{UpdatePause, func(ctx workflow.Context) {
			r.paused = true
			r.set(ctx, StatePaused)
			r.interrupt(ctx)
		}},
		{UpdateStop, func(ctx workflow.Context) {
			r.stop = true
			r.interrupt(ctx)
		}},
	} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, u.name,
			func(ctx workflow.Context) (Progress, error) { u.do(ctx); return r.p, nil },
			workflow.UpdateHandlerOptions{Validator: ended})
		if err != nil {
			return err
		}
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateResume,
		func(ctx workflow.Context, in ResumeInput) (Progress, error) {
			// The validator accepted the same call on the same state.
			cfg, changes, err := in.Apply(r.in.Config, r.p.Step)
			if err != nil {
				return r.p, err
			}
			if in.Data > 0 {
				r.p.World = 0 // the user chose the size: tried in full again
			}
			r.in.Config = cfg // from the next segment on
			r.p.Steps = int64(cfg.Train.Steps)
			r.p.Lineage = append(r.p.Lineage, changes...)
			r.paused = false
			r.p.Error = ""
			r.set(ctx, StateRunning)
			return r.p, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(in ResumeInput) error {
			if err := ended(); err != nil {
				return err
			}
			if in.Changes() && r.cancel != nil {
				return fmt.Errorf("run %s is training; `herd pause %s` first, then resume it with the changes, so that they take effect at the step it stops at", r.p.Name, r.p.Name)
			}
			_, _, err := in.Apply(r.in.Config, r.p.Step)
			return err
		}})
}

// ResumeInput is the resume update's argument (absent in older histories: the zero value):
// what may change when a run continues.
type ResumeInput struct {
	// Data, when > 0, is the run's parallel.data from its next segment on. Every segment
	// starts from a committed checkpoint, which resumes on any number of ranks that
	// divides the global batch, on the same sample order (see docs/parallel.md).
	Data int
	// Extension changes the run's length, peak LR or schedule from the step it has
	// committed on (config.Run.Resume); each change joins the run's lineage.
	config.Extension
}

// Changes reports whether in changes the training (more than the number of ranks).
func (in ResumeInput) Changes() bool {
	e := in.Extension
	return e.Steps != 0 || e.LR != 0 || e.Schedule != "" || len(e.Sets) > 0
}

// Apply returns the run's config cfg as it continues after step with in's changes, and
// the changes to its training (config.Run.Resume), or why they are refused: a
// parallel.data that the global batch does not divide, a key a resume may not change, a
// longer cosine schedule without --schedule.
func (in ResumeInput) Apply(cfg config.Run, step int64) (config.Run, []config.Change, error) {
	if in.Data > 0 {
		cfg.Parallel.Data = in.Data
		if err := cfg.Validate(); err != nil {
			return cfg, nil, err
		}
	}
	if !in.Changes() {
		return cfg, nil, nil
	}
	return cfg.Resume(step, in.Extension)
}

// interrupt cancels the segment in flight and waits until it has committed, so that the
// update's reply carries the step the run now stands at.
func (r *run) interrupt(ctx workflow.Context) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	// Only an ended workflow cancels this wait; the reply is then moot.
	_ = workflow.Await(ctx, func() bool { return r.cancel == nil })
}
