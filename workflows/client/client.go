// Package client is herd's side of the conversation with Temporal: connecting (to a
// cluster, or to herd's embedded server, started here when no address is given),
// starting and attaching to runs and sweeps, following them, reading their status, and
// pausing, resuming and stopping them. The workflows and activities themselves are
// package workflows; this package only ever talks to them through the server.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	sdkclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/workflows"
)

// defaultNamespace is the namespace Dial uses when none is given, and so that of herd's
// embedded server.
const defaultNamespace = "default"

// Dial connects to the Temporal frontend the user gave with --temporal, authenticated
// with auth.
func Dial(addr, namespace string, auth Auth) (sdkclient.Client, error) {
	c, err := dial(addr, namespace, auth)
	var u *usererr.Error
	switch {
	case errors.As(err, &u):
		return nil, err
	case err != nil && auth.TLS():
		return nil, usererr.New("--temporal "+addr, "cannot reach a Temporal server over TLS: %v; check that --tls-ca is the CA of the server's certificate "+
			"(--tls-server-name the name on it) and that it accepts --tls-cert or --api-key", err)
	case err != nil:
		return nil, usererr.New("--temporal "+addr, "cannot reach a Temporal server: %v; start one with `herd server` or leave --temporal out to use the embedded one "+
			"(a cluster that speaks TLS needs --tls-ca, --tls-cert and --tls-key, or --api-key)", err)
	}
	return c, nil
}

// dialServing connects to the herd process that serves the embedded server of stateDir at
// addr (found in the state dir, not given by the user): when it does not answer, the
// error says so, not that --temporal is unreachable.
func dialServing(stateDir, addr, namespace string, auth Auth) (sdkclient.Client, error) {
	c, err := dial(addr, namespace, auth)
	if usererr.Is(err) {
		return nil, err
	}
	if err != nil {
		return nil, usererr.New("--state-dir "+stateDir, "the herd process serving this state dir at %s does not answer: %v; "+
			"wait until it has ended (a stopping `herd run` checkpoints first) or end it, then run this command again "+
			"(a `herd server` given certificates wants them here too: --tls-ca, --tls-cert, --tls-key)", addr, err)
	}
	return c, nil
}

// dial connects to a Temporal frontend; a user error when auth's files are not usable. The
// SDK logs warnings and errors only (a skipped corrupt checkpoint is a warning the user
// must see); its routine lines are noise here.
func dial(addr, namespace string, auth Auth) (sdkclient.Client, error) {
	if namespace == "" {
		namespace = defaultNamespace
	}
	conn, creds, err := auth.options()
	if err != nil {
		return nil, err
	}
	logger := sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	return sdkclient.Dial(sdkclient.Options{HostPort: addr, Namespace: namespace, Logger: logger, ConnectionOptions: conn, Credentials: creds})
}

// Submit starts the run in.Config.Name, or attaches to it when it is running or has
// completed: the workflow ID is the run name, so launching twice never trains twice.
func Submit(ctx context.Context, c sdkclient.Client, queue string, in workflows.RunInput) (attached bool, err error) {
	name := in.Config.Name
	d, err := c.DescribeWorkflowExecution(ctx, name, "")
	switch d.GetWorkflowExecutionInfo().GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		// Running: follow it. Completed: its result is the answer; training it again
		// would only find the final checkpoint. Runs that ended otherwise start afresh
		// from their newest checkpoint. Either way only with the same config: attaching
		// to a run of other data or another checkpoint dir would report results the
		// user did not ask for.
		was, err := firstInput(ctx, c, name)
		if err != nil {
			return false, err
		}
		status := strings.ToLower(statusName(d.GetWorkflowExecutionInfo().GetStatus()))
		if err := sameConfig(name, status, was.Config, in.Config); err != nil {
			return false, err
		}
		return true, nil
	}
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		return false, fmt.Errorf("looking up run %s: %w", name, err)
	}
	if in.SegmentsPerRun == 0 {
		in.SegmentsPerRun = 200
	}
	_, err = c.ExecuteWorkflow(ctx, sdkclient.StartWorkflowOptions{
		ID:        name,
		TaskQueue: queue,
		// A run started by someone else in the meantime is attached to, not duplicated.
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, workflows.WorkflowName, in)
	if err != nil {
		return false, fmt.Errorf("starting run %s: %w", name, err)
	}
	return false, nil
}

// sameConfig refuses to attach a launch of config now to run name, which is status
// (running, completed) with config was, unless the two match: a user error names every
// key that differs, with both values. Two keys are not compared: parallel.data, which
// `herd resume --set parallel.data=N` changes while the run's first input keeps the old
// value, and which leaves the result unchanged; and model.preset, whose values are
// compared key by key.
func sameConfig(name, status string, was, now config.Run) error {
	was.Parallel, now.Parallel = config.Parallel{}, config.Parallel{}
	was.Model.Preset, now.Model.Preset = "", ""
	diffs := config.Diff(was, now)
	if len(diffs) == 0 {
		return nil
	}
	keys := make([]string, len(diffs))
	for i, d := range diffs {
		keys[i] = fmt.Sprintf("%s: %s (%s) vs %s (this launch)", d.Key, d.Was, status, d.Now)
	}
	return usererr.New("run "+name, "a run of this name is %s with another training config: %s; give this launch another name (--set name=...), or launch the run's own config to follow it",
		status, strings.Join(keys, "; "))
}

// Status is what `herd status` shows: the workflow's own Progress plus what the server
// knows of the segment in flight.
type Status struct {
	workflows.Progress
	Workflow    string               `json:"workflow"`               // Temporal's execution status: Running, Completed, Failed, ...
	Live        *workflows.Heartbeat `json:"live,omitempty"`         // last heartbeat of the segment in flight (of an earlier attempt while a retry waits)
	Attempt     int32                `json:"attempt,omitempty"`      // its attempt, 1 on a first try
	LastFailure string               `json:"last_failure,omitempty"` // why its previous attempt ended
	// Segment is what the segment in flight is doing, one of the Segment* states; empty
	// when none is.
	Segment       string     `json:"segment,omitempty"`
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"` // when the server last heard from it
	ETA           string     `json:"eta,omitempty"`            // steps left × tokens_per_step ÷ the live tokens/s (the run's)
	Checkpoints   []string   `json:"checkpoints,omitempty"`    // committed, oldest first, where readable from here

	// MaxAttempts is how many attempts a one-rank run's segment gets (Retry.MaxAttempts),
	// -1 when unlimited; 0 when unknown (no segment in flight, or a group's).
	MaxAttempts int32 `json:"max_attempts,omitempty"`
}

// What the segment in flight is doing, as in Status.Segment.
const (
	SegmentTraining  = "training"
	SegmentLate      = "heartbeat late"      // no heartbeat for lateAfter: its worker died or hangs, and the server retries it at the heartbeat timeout
	SegmentRetrying  = "waiting for a retry" // an attempt failed; the next waits for its backoff and a worker
	SegmentQueued    = "waiting for a worker"
	SegmentStopping  = "stopping" // pause, stop or a failed sibling rank: committing the step it is on
	SegmentReserving = "reserving ranks"
)

// lateAfter is how long a segment may go without a heartbeat before `herd status` calls
// it late: its worker sends one at least every second (MaxHeartbeatThrottleInterval), so
// five missed ones mean that something is wrong long before a long heartbeat timeout.
const lateAfter = 5 * time.Second

// GetStatus reads a run's status with DescribeWorkflowExecution, so it works with no
// worker running (the workflow keeps its Progress in its memo).
func GetStatus(ctx context.Context, c sdkclient.Client, name string) (Status, error) {
	s, err := describe(ctx, c, name)
	if err != nil {
		return Status{}, err
	}
	if s.Dir != "" {
		if st, err := checkpoint.OpenRoot(s.Dir); err == nil {
			if names, err := st.List(); err == nil {
				s.Checkpoints = names
			}
		}
	}
	return s, nil
}

// describe reads a run's Progress from its memo and its segment in flight from the
// server's pending activities.
func describe(ctx context.Context, c sdkclient.Client, name string) (Status, error) {
	d, err := c.DescribeWorkflowExecution(ctx, name, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return Status{}, usererr.New("run "+name, "no such run; `herd ls` lists runs")
	}
	if err != nil {
		return Status{}, fmt.Errorf("describing run %s: %w", name, err)
	}
	info := d.GetWorkflowExecutionInfo()
	s := Status{Workflow: statusName(info.GetStatus())}
	if p, ok := info.GetMemo().GetFields()[workflows.MemoProgress]; ok {
		if err := converter.GetDefaultDataConverter().FromPayload(p, &s.Progress); err != nil {
			return Status{}, fmt.Errorf("run %s: decoding its progress: %w", name, err)
		}
	}
	s.Name = name
	s.pending(d.GetPendingActivities(), time.Now())
	if s.GroupAttempt > 1 && s.State == workflows.StateRunning {
		// A group's retries are the workflow's: its rank segments are all first attempts.
		s.Attempt, s.LastFailure, s.MaxAttempts = s.GroupAttempt, s.GroupFailure, 0
		if s.Segment == "" {
			s.Segment = SegmentRetrying // the backoff before the group is reserved again
		}
	}
	if s.Live != nil && s.Live.Loss == 0 && s.Live.Step == s.Step {
		// The attempt has trained nothing yet since loading the committed step: that
		// step's loss is the run's.
		s.Live.Loss = s.Loss
	}
	if s.Live != nil && s.Live.TokensPerS > 0 && s.TokensPerStep > 0 && s.Live.Step < s.Steps {
		eta := time.Duration(float64(s.Steps-s.Live.Step) * float64(s.TokensPerStep) / s.Live.TokensPerS * float64(time.Second))
		s.ETA = eta.Round(time.Second).String()
	}
	return s, nil
}

// pending fills in the segment in flight from the run's pending activities as of now. Of
// a group's ranks, which step together, one that is not training says the most.
func (s *Status) pending(acts []*workflowpb.PendingActivityInfo, now time.Time) {
	for _, a := range acts {
		switch a.GetActivityType().GetName() {
		case workflows.ReserveActivity:
			if s.Segment == "" {
				s.Segment = SegmentReserving
			}
			continue
		case workflows.SegmentActivity, workflows.RankActivity:
		default:
			continue
		}
		state := segmentState(a, now)
		if s.Segment != "" && s.Segment != SegmentReserving && state == SegmentTraining {
			continue
		}
		s.Segment = state
		s.Attempt = a.GetAttempt()
		if a.GetActivityType().GetName() == workflows.SegmentActivity {
			s.MaxAttempts = a.GetMaximumAttempts()
			if s.MaxAttempts == 0 { // the server's unlimited
				s.MaxAttempts = -1
			}
		}
		s.LastFailure = a.GetLastFailure().GetMessage()
		if a.GetLastWorkerIdentity() != "" {
			s.Worker = a.GetLastWorkerIdentity()
		}
		if t := a.GetLastHeartbeatTime(); t != nil {
			at := t.AsTime()
			s.LastHeartbeat = &at
		}
		if det := a.GetHeartbeatDetails(); det != nil {
			var hb workflows.Heartbeat
			if converter.GetDefaultDataConverter().FromPayloads(det, &hb) == nil {
				s.Live = &hb
			}
		}
	}
}

// segmentState says what a pending segment activity is doing as of now.
func segmentState(a *workflowpb.PendingActivityInfo, now time.Time) string {
	switch a.GetState() {
	case enumspb.PENDING_ACTIVITY_STATE_SCHEDULED:
		if a.GetAttempt() > 1 {
			return SegmentRetrying
		}
		return SegmentQueued
	case enumspb.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED:
		return SegmentStopping
	}
	last := a.GetLastHeartbeatTime()
	if last == nil || last.AsTime().Before(a.GetLastStartedTime().AsTime()) {
		last = a.GetLastStartedTime() // this attempt has not beaten yet
	}
	if last != nil && now.Sub(last.AsTime()) > lateAfter {
		return SegmentLate
	}
	return SegmentTraining
}

func statusName(st enumspb.WorkflowExecutionStatus) string {
	return map[enumspb.WorkflowExecutionStatus]string{
		enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:          "Running",
		enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:        "Completed",
		enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:           "Failed",
		enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:         "Canceled",
		enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:       "Terminated",
		enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW: "ContinuedAsNew",
		enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:        "TimedOut",
	}[st]
}

// List returns every run the namespace knows, newest first: from visibility, and for a
// running run from DescribeWorkflowExecution as well (its segment in flight). An empty
// list, not nil, when there is none (`herd ls --json` prints []).
func List(ctx context.Context, c sdkclient.Client) ([]Status, error) {
	out, running, err := listMemos(ctx, c)
	if err != nil {
		return nil, err
	}
	// Its segment in flight: the live loss, and whether it is late or retrying. One call
	// per running run, listDescribers at a time: a dashboard lists 150 runs every second.
	sem := make(chan struct{}, listDescribers)
	var wg sync.WaitGroup
	for _, i := range running {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if d, err := describe(ctx, c, out[i].Name); err == nil {
				out[i] = d
			}
		})
	}
	wg.Wait()
	return out, nil
}

// listDescribers is how many DescribeWorkflowExecution calls List has in flight.
const listDescribers = 16

// listMemos lists every run from visibility, with its Progress from its memo, and the
// indexes of those whose workflow is running.
func listMemos(ctx context.Context, c sdkclient.Client) (out []Status, running []int, err error) {
	out = []Status{}
	seen := map[string]bool{}
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         fmt.Sprintf("WorkflowType = '%s'", workflows.WorkflowName),
			NextPageToken: token,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("listing runs: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			id := e.GetExecution().GetWorkflowId()
			if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW || seen[id] {
				// An earlier execution of a run listed by its latest: one it continued
				// as new, or one that ended before the run was started again under its
				// name (`herd resume` of a completed run, a sweep's promoted trial).
				continue
			}
			seen[id] = true
			s := Status{Workflow: statusName(e.GetStatus())}
			if p, ok := e.GetMemo().GetFields()[workflows.MemoProgress]; ok {
				_ = converter.GetDefaultDataConverter().FromPayload(p, &s.Progress)
			}
			s.Name = id
			if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				running = append(running, len(out))
			}
			out = append(out, s)
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, running, nil
		}
	}
}

// Control sends a pause, resume or stop update (with its arguments: resume takes a
// ResumeInput) and returns the run's Progress after it.
func Control(ctx context.Context, c sdkclient.Client, name, update string, args ...any) (workflows.Progress, error) {
	p, err := sendUpdate(ctx, c, name, update, args...)
	if err != nil {
		return p, controlError(name, update, err)
	}
	return p, nil
}

// sendUpdate is Control without the translation of its errors.
func sendUpdate(ctx context.Context, c sdkclient.Client, name, update string, args ...any) (workflows.Progress, error) {
	var p workflows.Progress
	h, err := c.UpdateWorkflow(ctx, sdkclient.UpdateWorkflowOptions{
		WorkflowID:   name,
		UpdateName:   update,
		Args:         args,
		WaitForStage: sdkclient.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &p)
	}
	return p, err
}

// resumeRunning sends the resume update to a run whose workflow is running. Just after a
// server restart (`herd run` stopped by a signal, then `herd resume`), the update may come
// back NotFound while the workflow's first task after the restart still waits on the dead
// process's sticky queue; it is sent again while the workflow is still running, for up to
// a minute.
func resumeRunning(ctx context.Context, c sdkclient.Client, name string, opts workflows.ResumeInput) (workflows.Progress, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		p, err := sendUpdate(ctx, c, name, workflows.UpdateResume, opts)
		var nf *serviceerror.NotFound
		if !errors.As(err, &nf) || time.Now().After(deadline) {
			if err != nil {
				return p, controlError(name, workflows.UpdateResume, err)
			}
			return p, nil
		}
		d, derr := c.DescribeWorkflowExecution(ctx, name, "")
		if derr != nil || d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return p, controlError(name, workflows.UpdateResume, err)
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func controlError(name, update string, err error) error {
	var nf *serviceerror.NotFound
	var app *temporal.ApplicationError
	switch {
	case errors.As(err, &nf):
		return usererr.New("run "+name, "no running run by this name; `herd ls` lists runs")
	case errors.As(err, &app):
		return usererr.New("run "+name, "cannot %s: %s", update, app.Message())
	}
	return fmt.Errorf("%s %s: %w", update, name, err)
}

// Resume continues a run: a paused or failed one through the resume update; one whose
// workflow has ended (completed, stopped, terminated, ended by an error, or killed with
// its server and never restarted) by starting it again from its latest input and last
// Progress. Either way training continues from the newest committed checkpoint, on
// opts.Data ranks when it is set, with the changes opts asks for (ResumeInput.Apply),
// which Resume returns as they joined the run's lineage.
func Resume(ctx context.Context, c sdkclient.Client, queue, name string, opts workflows.ResumeInput) ([]config.Change, error) {
	d, err := c.DescribeWorkflowExecution(ctx, name, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil, usererr.New("run "+name, "no such run; `herd ls` lists runs, `herd run CONFIG` starts one")
	}
	if err != nil {
		return nil, fmt.Errorf("describing run %s: %w", name, err)
	}
	s, err := GetStatus(ctx, c, name)
	if err != nil {
		return nil, err
	}
	if d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		p, err := resumeRunning(ctx, c, name, opts)
		if err != nil || len(p.Lineage) < len(s.Lineage) {
			return nil, err
		}
		return p.Lineage[len(s.Lineage):], nil
	}
	in, err := firstInput(ctx, c, name)
	if err != nil {
		return nil, err
	}
	cfg, changes, err := opts.Apply(in.Config, s.Step)
	if err != nil {
		return nil, usererr.New("run "+name, "cannot resume: %v", err)
	}
	in.Config = cfg
	carry := s.Progress
	carry.State, carry.Error = workflows.StateRunning, ""
	carry.Lineage = append(carry.Lineage, changes...)
	in.Carry = &carry
	_, err = c.ExecuteWorkflow(ctx, sdkclient.StartWorkflowOptions{
		ID:                       name,
		TaskQueue:                queue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, workflows.WorkflowName, in)
	if err != nil {
		return nil, fmt.Errorf("restarting run %s: %w", name, err)
	}
	return changes, nil
}

// RunConfig is the config run name's latest execution started with; a resume in that
// execution may since have changed what config.Resumable allows.
func RunConfig(ctx context.Context, c sdkclient.Client, name string) (config.Run, error) {
	in, err := firstInput(ctx, c, name)
	return in.Config, err
}

// firstInput reads the RunInput the run's latest execution started with.
func firstInput(ctx context.Context, c sdkclient.Client, name string) (workflows.RunInput, error) {
	it := c.GetWorkflowHistory(ctx, name, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return workflows.RunInput{}, fmt.Errorf("run %s has no history", name)
	}
	ev, err := it.Next()
	if err != nil {
		return workflows.RunInput{}, fmt.Errorf("reading run %s: %w", name, err)
	}
	var in workflows.RunInput
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if err := converter.GetDefaultDataConverter().FromPayloads(attrs.GetInput(), &in); err != nil {
		return workflows.RunInput{}, fmt.Errorf("run %s: decoding its input: %w", name, err)
	}
	return in, nil
}

// Follow calls show with the run's status every interval until the run ends, then returns
// its final Progress, or its error: a user error (bad config, corrupt data, divergence) as
// a usererr, so that the CLI exits with status 2. A run that exhausts a segment's retries
// does not end: it waits, failed, for `herd resume`; Follow then stops following and
// returns a *FailedError.
func Follow(ctx context.Context, c sdkclient.Client, name string, every time.Duration, show func(Status)) (workflows.Progress, error) {
	return awaitResult[workflows.Progress](ctx, c, name, every, GetStatus, show, func(s Status) error {
		if s.State == workflows.StateFailed {
			return &FailedError{Run: name, Reason: s.Error}
		}
		return nil
	})
}

// FailedError is a followed run that exhausted a segment's retries and waits for `herd
// resume` (state failed).
type FailedError struct {
	Run    string
	Reason string // Progress.Error: the segment and its last attempt's failure
}

func (e *FailedError) Error() string { return fmt.Sprintf("run %s failed: %s", e.Run, e.Reason) }

// awaitResult waits for workflow name's result R (following ContinueAsNew), and meanwhile
// reads what poll reads every interval, shows it, and stops with stop's error when stop
// (if set) returns one; it also shows it once more at the end. When ctx ends first, or
// stop stops it, the caller has stopped following; the workflow goes on.
func awaitResult[R, S any](ctx context.Context, c sdkclient.Client, name string, every time.Duration,
	poll func(context.Context, sdkclient.Client, string) (S, error), show func(S), stop func(S) error) (R, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	var r R
	var runErr error
	go func() {
		defer close(done)
		// GetWorkflow with no run ID follows ContinueAsNew to the final execution.
		runErr = c.GetWorkflow(ctx, name, "").Get(ctx, &r)
	}()
	check := func() error {
		s, err := poll(ctx, c, name)
		if err != nil {
			return nil // shown at the next tick; the result says how the run ended
		}
		if show != nil {
			show(s)
		}
		if stop != nil {
			return stop(s)
		}
		return nil
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-done:
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			if show != nil {
				_ = check()
			}
			return r, runError(name, runErr)
		case <-tick.C:
			if err := check(); err != nil {
				cancel() // stop waiting for the result, and let the waiter finish writing r
				<-done
				var none R
				return none, err
			}
		}
	}
}

// runError turns the workflow's ErrUser failure back into a usererr, and its ErrPanic
// failure into an error that says so in a line; others it returns as they are.
func runError(name string, err error) error {
	var app *temporal.ApplicationError
	switch {
	case errors.As(err, &app) && app.Type() == workflows.ErrUser:
		return usererr.New("run "+name, "%s", app.Message())
	case errors.As(err, &app) && app.Type() == workflows.ErrPanic:
		return fmt.Errorf("run %s: %s", name, app.Message())
	}
	return err
}
