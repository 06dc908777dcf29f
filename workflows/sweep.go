package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/trainer"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/workflows/sweep"
)

// Names of the Sweep workflow and its activity; the replay guard of TrainRun's names
// applies to these too.
const (
	SweepWorkflow = "Sweep"     // workflow type; workflow ID = sweep name
	EvalActivity  = "TrialEval" // activity: eval loss of a trial's checkpoint
	StopActivity  = "StopTrial" // local activity: the stop update to a trial's run
	// StateRung is a TrainRun that ended at RunInput.Until: a sweep trial waiting at an
	// ASHA rung for the sweep's decision, holding no worker.
	StateRung = "rung"
)

// Trial states in SweepProgress.
const (
	TrialPending   = "pending"   // not started
	TrialRunning   = "running"   // its TrainRun child trains toward the next rung or the end
	TrialRung      = "rung"      // at a rung, not (yet) in its top 1/reduction: waits for more results there
	TrialPromoted  = "promoted"  // passed its rung, waiting for a free slot
	TrialStopped   = "stopped"   // stopped by ASHA at a rung (or by `herd stop`)
	TrialCompleted = "completed" // trained all steps
	TrialError     = "error"     // a user error or divergence ended it
)

// SweepInput starts a Sweep: the expanded trials and the rules, all decided by the client
// from the sweep file (package sweep), so that the workflow reads no file.
type SweepInput struct {
	Name string
	// Base is what every trial's config is made from, carried once; each trial carries
	// only its values, and the workflow makes its config when a leg starts, so that the
	// input (sent again on every ContinueAsNew) stays small however many trials there are.
	// Nil in the inputs of sweeps started before, whose trials carry whole configs.
	Base          *sweep.BaseSource
	Trials        []SweepTrial
	Metric        string // loss | eval_loss
	Minimize      bool
	MaxConcurrent int
	Rungs         []int64 // ASHA rungs; nil = no early stopping
	Reduction     int
	Grace         int64
	Transfer      *TransferInput // nil = no transfer
	// HeartbeatTimeout, SegmentSteps, SearchAttributes, ElasticWait and Retry are passed to
	// every trial's RunInput (and the transfer target's).
	Retry
	HeartbeatTimeout time.Duration
	SegmentSteps     int64
	SearchAttributes bool
	ElasticWait      time.Duration
	// EventsPerRun bounds trial legs ended per workflow execution before ContinueAsNew;
	// 0 = 500. The server's suggestion also triggers it.
	EventsPerRun int
	Carry        *SweepProgress // state handed over by ContinueAsNew
}

// SweepTrial is one trial of SweepInput. Config is its whole run config in the inputs of
// sweeps started before SweepInput.Base was carried (and only there), kept so that those
// sweeps still run and their histories replay.
type SweepTrial struct {
	sweep.Trial
	Config *config.Run `json:"config,omitempty"`
}

// TransferInput is the target run config that the best trial's values are applied to
// (see sweep.Target).
type TransferInput struct {
	File  string
	Src   []byte
	Sets  []string
	Proxy config.Run
}

// SweepProgress is the sweep's state: its query answer, memo and result.
type SweepProgress struct {
	Name     string       `json:"name"`
	State    string       `json:"state"` // running | completed | stopped | error
	Metric   string       `json:"metric"`
	Minimize bool         `json:"minimize"`
	Rungs    []int64      `json:"rungs,omitempty"`
	Trials   []TrialState `json:"trials"`
	Best     int          `json:"best"`    // index of the best completed trial; -1 = none yet
	Compute  int64        `json:"compute"` // steps trained, summed over trials
	Target   *Progress    `json:"target,omitempty"`
	Error    string       `json:"error,omitempty"`
	Started  time.Time    `json:"started"`
	Updated  time.Time    `json:"updated"`
}

// TrialState is one trial as the sweep knows it.
type TrialState struct {
	Index    int       `json:"index"`
	ID       string    `json:"id"` // its TrainRun's workflow ID, sweep/trial-N
	Params   []string  `json:"params"`
	State    string    `json:"state"`
	Step     int64     `json:"step"`             // last committed step
	Steps    int64     `json:"steps"`            // train.steps
	Loss     float64   `json:"loss"`             // training loss at Step
	RungLoss []float64 `json:"rung_metric"`      // the metric at each rung reached, in rung order
	Final    float64   `json:"final"`            // the metric after the last step; set when completed
	Error    string    `json:"error,omitempty"`  // why it ended in error
	Worker   string    `json:"worker,omitempty"` // worker of its last segment
}

// TrialID is the workflow ID of a sweep's trial.
func TrialID(sweepName string, index int) string { return fmt.Sprintf("%s/trial-%d", sweepName, index) }

// EvalInput asks for the eval loss of one checkpoint.
type EvalInput struct {
	Checkpoint string // folder of the checkpoint
	Eval       string // data.eval
	Batches    int    // train.eval.batches
}

// TrialEval evaluates a trial's rung checkpoint on the held-out data: the same batches
// for every trial, so rung metrics compare like with like and do not depend on timing.
func (a *Activities) TrialEval(ctx context.Context, in EvalInput) (float64, error) {
	tr, err := trainer.Open(in.Checkpoint, in.Eval, trainer.Options{Backend: a.Backend})
	if err != nil {
		return 0, classify(err)
	}
	defer tr.Close()
	res, err := tr.Eval(in.Batches)
	if err != nil {
		return 0, classify(err)
	}
	return res.Loss, nil
}

// registerSweep adds the Sweep workflow and StopTrial to a worker, and TrialEval where it
// trains.
func registerSweep(w worker.Registry, c client.Client, acts *Activities) {
	w.RegisterWorkflowWithOptions(Sweep, workflow.RegisterOptions{Name: SweepWorkflow})
	w.RegisterActivityWithOptions(stopper{c}.StopTrial, activity.RegisterOptions{Name: StopActivity})
	if acts != nil {
		w.RegisterActivityWithOptions(acts.TrialEval, activity.RegisterOptions{Name: EvalActivity})
	}
}

// stopper sends a trial's TrainRun the stop update. It runs as a local activity, in the
// sweep's workflow worker, so that it never waits behind the segment it stops for the
// worker's one activity slot.
type stopper struct{ c client.Client }

// StopTrial stops a trial's run: its segment ends at the next step boundary (seen at its
// next heartbeat) and commits that step, and its worker is free. A run that has already
// ended needs nothing: the server does not find it running, or its workflow refuses the
// update.
func (s stopper) StopTrial(ctx context.Context, id string) error {
	h, err := s.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateName:   UpdateStop,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	var nf *serviceerror.NotFound
	var app *temporal.ApplicationError
	if errors.As(err, &nf) || errors.As(err, &app) {
		return nil
	}
	return err
}

// sweepRun is the Sweep workflow's mutable state.
type sweepRun struct {
	in       SweepInput
	p        SweepProgress
	rungs    []int64 // the rungs where decisions are made: those at or past the grace period
	running  int     // legs and evaluations in flight
	stopping bool
}

// Sweep is the workflow: each trial trains as a TrainRun child, leg by leg, from rung to
// rung. At each rung the child ends (freeing its worker) and the sweep applies ASHA's rule
// to the rung's results in trial-index order (decide), so decisions depend on the metrics
// alone, never on which trial finished first, and a sweep run twice (or with another
// max_concurrent) decides the same.
func Sweep(ctx workflow.Context, in SweepInput) (SweepProgress, error) {
	s := &sweepRun{in: in}
	for _, r := range in.Rungs {
		if r >= in.Grace {
			s.rungs = append(s.rungs, r)
		}
	}
	if in.Carry != nil {
		s.p = *in.Carry
	} else {
		s.p = SweepProgress{Name: in.Name, State: StateRunning, Metric: in.Metric, Minimize: in.Minimize,
			Rungs: s.rungs, Best: -1, Started: workflow.Now(ctx)}
		for _, t := range in.Trials {
			steps := t.Steps
			if t.Config != nil {
				steps = int64(t.Config.Train.Steps)
			}
			s.p.Trials = append(s.p.Trials, TrialState{Index: t.Index, ID: TrialID(in.Name, t.Index), Params: t.Params,
				State: TrialPending, Steps: steps})
		}
	}
	if err := s.handlers(ctx); err != nil {
		return s.p, err
	}
	s.set(ctx)
	limit := in.EventsPerRun
	if limit <= 0 {
		limit = 500
	}
	sel := workflow.NewSelector(ctx)
	events, draining := 0, false
	for {
		s.decide()
		for !draining && !s.stopping && s.running < in.MaxConcurrent {
			i := s.next()
			if i < 0 {
				break
			}
			s.launch(ctx, sel, i)
		}
		s.set(ctx)
		if s.running == 0 {
			switch {
			case s.stopping:
				return s.finish(ctx, StateStopped)
			case draining:
				if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
					return s.p, err
				}
				next := in
				carry := s.p
				next.Carry = &carry
				return s.p, workflow.NewContinueAsNewError(ctx, SweepWorkflow, next)
			case s.done():
				if err := s.transfer(ctx); err != nil {
					s.p.Error = err.Error()
					return s.finish(ctx, StateError)
				}
				return s.finish(ctx, StateCompleted)
			default: // every unfinished trial waits on one before it: a bug in decide
				panic(fmt.Sprintf("sweep %s: nothing runs and nothing can start: %+v", in.Name, s.p.Trials))
			}
		}
		sel.Select(ctx)
		events++
		if events >= limit || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			draining = true // let the legs in flight end at their rungs, then continue as new
		}
	}
}

// next is the trial to start: as in ASHA, a promoted one first, from the highest rung
// (then the lowest index), else the first pending one; -1 if none.
func (s *sweepRun) next() int {
	best := -1
	for i, t := range s.p.Trials {
		if t.State == TrialPromoted && (best < 0 || len(t.RungLoss) > len(s.p.Trials[best].RungLoss)) {
			best = i
		}
	}
	if best >= 0 {
		return best
	}
	for i, t := range s.p.Trials {
		if t.State == TrialPending {
			return i
		}
	}
	return -1
}

// target is the step trial t's next leg ends at: its next rung, or 0 = train.steps.
func (s *sweepRun) target(t TrialState) int64 {
	for _, r := range s.rungs {
		if r > t.Step && r < t.Steps {
			return r
		}
	}
	return 0
}

// config is trial i's run config: made from the base and the trial's values, or, in a
// sweep started before inputs carried the base, the whole config its input carries.
func (s *sweepRun) config(i int) (config.Run, error) {
	tr := s.in.Trials[i]
	if s.in.Base == nil {
		return *tr.Config, nil
	}
	return s.in.Base.Config(s.in.Name, tr.Trial)
}

// launch starts trial i's next leg as a TrainRun child (workflow ID sweep/trial-N) and
// folds its end into the state when the selector picks it. A trial whose config cannot
// be made (a worker whose herd no longer accepts it) ends in error.
func (s *sweepRun) launch(ctx workflow.Context, sel workflow.Selector, i int) {
	t := &s.p.Trials[i]
	cfg, err := s.config(i)
	if err != nil {
		t.State, t.Error = TrialError, err.Error()
		return
	}
	in := RunInput{Config: cfg, SegmentSteps: s.in.SegmentSteps, HeartbeatTimeout: s.in.HeartbeatTimeout,
		SearchAttributes: s.in.SearchAttributes, ElasticWait: s.in.ElasticWait, Until: s.target(*t), Retry: s.in.Retry}
	if t.Step > 0 { // continue from the rung's checkpoint without an empty first segment
		in.Carry = &Progress{Name: cfg.Name, State: StateRunning, Step: t.Step, Steps: t.Steps, Loss: t.Loss}
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: t.ID})
	t.State = TrialRunning
	s.running++
	f := workflow.ExecuteChildWorkflow(cctx, WorkflowName, in)
	sel.AddFuture(f, func(f workflow.Future) {
		s.running--
		var p Progress
		err := f.Get(ctx, &p)
		var canceled *temporal.CanceledError
		var app *temporal.ApplicationError
		switch {
		case err == nil && p.State == StateStopped:
			t.Step, t.Loss, t.Worker, t.State = p.Step, p.Loss, p.Worker, TrialStopped
		case err == nil:
			t.Step, t.Loss, t.Worker = p.Step, p.Loss, p.Worker
			s.metric(ctx, sel, i, cfg, p)
		case errors.As(err, &canceled):
			t.State = TrialStopped
		case errors.As(err, &app) && (app.Type() == ErrUser || app.Type() == ErrPanic):
			t.State, t.Error = TrialError, app.Message()
		default:
			t.State, t.Error = TrialError, err.Error()
		}
		s.account()
	})
}

// metric records the trial's metric at the step its leg (of config cfg) ended on: the
// training loss, or the eval loss of that step's checkpoint from a TrialEval activity.
func (s *sweepRun) metric(ctx workflow.Context, sel workflow.Selector, i int, cfg config.Run, p Progress) {
	if s.in.Metric != "eval_loss" {
		s.record(i, p.Loss)
		return
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: []string{ErrUser}},
	})
	s.running++
	f := workflow.ExecuteActivity(actx, EvalActivity, EvalInput{
		Checkpoint: storage.Join(p.Dir, p.Checkpoint), Eval: cfg.Data.Eval, Batches: cfg.Train.Eval.Batches})
	sel.AddFuture(f, func(f workflow.Future) {
		s.running--
		var loss float64
		if err := f.Get(ctx, &loss); err != nil {
			t := &s.p.Trials[i]
			t.State, t.Error = TrialError, "evaluating "+p.Checkpoint+": "+err.Error()
			return
		}
		s.record(i, loss)
	})
}

// record files a metric: the final one, or a rung's, which then waits for decide.
func (s *sweepRun) record(i int, v float64) {
	t := &s.p.Trials[i]
	if t.Step >= t.Steps {
		t.State, t.Final = TrialCompleted, v
		if s.p.Best < 0 || sweep.Better(v, s.p.Trials[s.p.Best].Final, s.in.Minimize) {
			s.p.Best = i
		}
		return
	}
	t.State = TrialRung
	t.RungLoss = append(t.RungLoss, v)
}

// decide applies ASHA's rule (sweep.Promote) at every rung, to the results there in
// trial-index order: the results of trials 0..i-1 count once every one of those trials
// has reached the rung or ended below it, so the decisions depend on the metrics alone,
// never on which trial finished first. A trial at a rung that is not promoted waits,
// holding no worker, until the rung is complete (every trial has reached it or ended);
// then it stops.
func (s *sweepRun) decide() {
	for k := range s.rungs {
		var at []int // trials with a result at rung k, in index order
		var res []float64
		complete := true
		for i, t := range s.p.Trials {
			if len(t.RungLoss) > k {
				at, res = append(at, i), append(res, t.RungLoss[k])
			} else if !ended(t) {
				complete = false // it may still reach the rung: later results wait for it
				break
			}
		}
		for j, keep := range sweep.Promote(res, s.in.Reduction, s.in.Minimize, complete) {
			t := &s.p.Trials[at[j]]
			if t.State != TrialRung || len(t.RungLoss) != k+1 {
				continue // decided before, or already past this rung
			}
			switch {
			case keep:
				t.State = TrialPromoted
			case complete:
				t.State = TrialStopped
			}
		}
	}
}

func ended(t TrialState) bool {
	return t.State == TrialStopped || t.State == TrialError || t.State == TrialCompleted
}

func (s *sweepRun) done() bool {
	for _, t := range s.p.Trials {
		if !ended(t) {
			return false
		}
	}
	return true
}

func (s *sweepRun) account() {
	s.p.Compute = 0
	for _, t := range s.p.Trials {
		s.p.Compute += t.Step
	}
}

// transfer launches the target with the best trial's values as the child sweep/target.
func (s *sweepRun) transfer(ctx workflow.Context) error {
	tin := s.in.Transfer
	if tin == nil || s.p.Best < 0 {
		return nil
	}
	cfg, err := sweep.Target(tin.File, tin.Src, tin.Sets, tin.Proxy, sweep.TargetName(s.in.Name), s.p.Trials[s.p.Best].Params)
	if err != nil {
		return fmt.Errorf("transfer target: %w", err)
	}
	s.p.Target = &Progress{Name: cfg.Name, State: StateRunning, Steps: int64(cfg.Train.Steps)}
	s.set(ctx)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: s.in.Name + "/target"})
	in := RunInput{Config: cfg, SegmentSteps: s.in.SegmentSteps, HeartbeatTimeout: s.in.HeartbeatTimeout,
		SearchAttributes: s.in.SearchAttributes, ElasticWait: s.in.ElasticWait, Retry: s.in.Retry}
	var p Progress
	if err := workflow.ExecuteChildWorkflow(cctx, WorkflowName, in).Get(ctx, &p); err != nil {
		return fmt.Errorf("transfer target %s: %w", cfg.Name, err)
	}
	s.p.Target = &p
	return nil
}

func (s *sweepRun) set(ctx workflow.Context) {
	s.p.Updated = workflow.Now(ctx)
	if err := workflow.UpsertMemo(ctx, map[string]any{MemoProgress: s.p}); err != nil {
		panic(err) // only records a command; failing to encode SweepProgress is a bug
	}
	if s.in.SearchAttributes {
		if err := workflow.UpsertTypedSearchAttributes(ctx, saState.ValueSet(s.p.State), saStep.ValueSet(s.p.Compute)); err != nil {
			panic(err)
		}
	}
}

func (s *sweepRun) finish(ctx workflow.Context, state string) (SweepProgress, error) {
	s.p.State = state
	s.set(ctx)
	err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	return s.p, err
}

// handlers: the progress query; resume, which `herd resume` sends to a running sweep (the
// sweep itself needs nothing: its children retry on their own); stop, which cancels the
// legs in flight through their runs' own stop update (each commits the step it is on)
// and ends the sweep. (Cancelling the child workflows would be the obvious way, but on
// the embedded server a cancel request to a run with a segment in flight was recorded by
// the parent and never reached the child.)
func (s *sweepRun) handlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (SweepProgress, error) { return s.p, nil }); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandler(ctx, UpdateResume, func(ctx workflow.Context) (SweepProgress, error) { return s.p, nil }); err != nil {
		return err
	}
	return workflow.SetUpdateHandler(ctx, UpdateStop, func(ctx workflow.Context) (SweepProgress, error) {
		s.stopping = true
		lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{ScheduleToCloseTimeout: 10 * time.Minute})
		var stops []workflow.Future
		for i, t := range s.p.Trials { // in index order: commands must replay in the same order
			if t.State == TrialRunning {
				stops = append(stops, workflow.ExecuteLocalActivity(lctx, StopActivity, s.p.Trials[i].ID))
			}
		}
		for _, f := range stops {
			if err := f.Get(ctx, nil); err != nil {
				return s.p, err
			}
		}
		return s.p, nil
	})
}
