package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	sdkclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/devserver"
)

// StateDir is the state directory: $HERD_HOME, else ~/.herd.
func StateDir() string {
	if d := os.Getenv("HERD_HOME"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".herd"
	}
	return filepath.Join(home, ".herd")
}

// localRanks is how many ranks the in-process worker of Connect (no server of one's
// own) takes: enough for a data-parallel run on one machine over loopback.
const localRanks = 8

// Target is the Temporal server a command talks to, as the user named it: Addr
// (--temporal) if given; else herd's embedded server on StateDir, served by whichever
// herd process holds it, or by this one.
type Target struct {
	Addr      string // host:port of a Temporal frontend; empty for the embedded server
	Namespace string // empty for "default"
	Queue     string // task queue of the workflows and their workers
	StateDir  string // the embedded server's state (see StateDir)
	Auth      Auth   // certificates or API key of a secured server, Addr's or the state dir's
	// UI starts the Temporal Web UI beside the embedded server when this process starts
	// it (devserver.Options.UI); nil serves none.
	UI devserver.StartUI
}

// Embedded reports whether Connect would start the embedded server in this process: no
// address is given, and no herd process serves the state dir. A command that trains
// here checks what it must before it connects (memory, --detach).
func (t Target) Embedded() bool {
	return t.Addr == "" && devserver.RunningAddr(t.StateDir) == ""
}

// Conn is a connection to a Target, with the embedded server and worker that Connect
// started for it, if any.
type Conn struct {
	Target
	Client sdkclient.Client
	srv    *devserver.Server // the embedded server, when this process serves it
	w      worker.Worker     // the worker in this process, when this process serves
	trains bool              // whether that worker trains segments
}

// Connect is herd's one launcher: it connects to t and, when t is the embedded server
// and no herd process serves it yet, starts it in this process with a worker on t.Queue.
// With acts that worker trains (the whole run, sweep or resume happens here); with acts
// nil it only runs workflow code, so that queries and pause/stop updates are answered
// without this process taking up a segment. Close releases it all.
func Connect(t Target, acts *workflows.Activities) (*Conn, error) {
	c := &Conn{Target: t}
	var err error
	if t.Addr != "" {
		c.Client, err = Dial(t.Addr, t.Namespace, t.Auth)
	} else if addr := devserver.RunningAddr(t.StateDir); addr != "" {
		c.Client, err = dialServing(t.StateDir, addr, t.Namespace, t.Auth)
	} else {
		err = c.serve(acts)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// serve starts (or joins) the embedded server on the state dir and the worker of this
// process (see Connect).
func (c *Conn) serve(acts *workflows.Activities) error {
	addr, auth := "", c.Auth
	srv, err := devserver.Start(devserver.Options{StateDir: c.StateDir, UI: c.UI})
	var busy *devserver.BusyError
	switch {
	case errors.As(err, &busy):
		addr = busy.Addr // another herd process started serving since Embedded
	case err != nil:
		return err
	default:
		// Started here: in this process, on loopback, without TLS.
		c.srv, addr, auth = srv, srv.Addr(), Auth{}
	}
	// The server started here has the default namespace, whatever t.Namespace says.
	if c.Client, err = dialServing(c.StateDir, addr, "", auth); err != nil {
		return err
	}
	if acts != nil {
		if acts.Ranks == 0 {
			acts.Ranks = localRanks
		}
		c.w, c.trains = workflows.NewWorker(c.Client, c.Queue, acts), true
	} else {
		c.w = workflows.NewWorkflowWorker(c.Client, c.Queue)
	}
	if err := c.w.Start(); err != nil {
		return fmt.Errorf("starting the in-process worker: %w", err)
	}
	return nil
}

// Close stops the worker of this process (which first checkpoints a segment in flight),
// then the connection, then the embedded server.
func (c *Conn) Close() {
	if c.w != nil {
		c.w.Stop()
	}
	if c.Client != nil {
		c.Client.Close()
	}
	if c.srv != nil {
		c.srv.Stop()
	}
}

// UIURL is the Temporal Web UI's URL when this process serves the embedded server with
// one (see Target.UI), else "".
func (c *Conn) UIURL() string {
	if c.srv == nil {
		return ""
	}
	return c.srv.UIURL()
}

// InProcess reports whether Connect started the embedded server's worker in this process
// (and the server too, unless another herd process started serving it first): what it
// runs stops when this process ends.
func (c *Conn) InProcess() bool { return c.w != nil }

// searchAttributes makes sure that workflows started on the target may set herd's
// search attributes: herd's own server registers them; another cluster is asked to (see
// RegisterSearchAttributes).
func (c *Conn) searchAttributes(ctx context.Context) error {
	if c.Addr == "" {
		return nil
	}
	return RegisterSearchAttributes(ctx, c.Client, c.Namespace)
}

// SubmitRun starts the run in.Config.Name or attaches to it (see Submit).
func (c *Conn) SubmitRun(ctx context.Context, in workflows.RunInput) (attached bool, err error) {
	if err := c.searchAttributes(ctx); err != nil {
		return false, err
	}
	in.SearchAttributes = true
	return Submit(ctx, c.Client, c.Queue, in)
}

// ResumeRun continues run name (see Resume). When this process trains it, also after
// the process that ran the run, server included, was killed, the dead segment's attempt
// is failed at once (see failDeadSegment) rather than left to its heartbeat timeout, and
// this process's worker retries it from the last committed checkpoint.
func (c *Conn) ResumeRun(ctx context.Context, name string, opts workflows.ResumeInput) ([]config.Change, error) {
	if c.trains {
		if err := failDeadSegment(ctx, c.Client, name); err != nil {
			return nil, err
		}
	}
	return Resume(ctx, c.Client, c.Queue, name, opts)
}

// SubmitSweep starts the sweep in.Name or attaches to it (see SubmitSweep).
func (c *Conn) SubmitSweep(ctx context.Context, in workflows.SweepInput) (attached bool, err error) {
	if err := c.searchAttributes(ctx); err != nil {
		return false, err
	}
	in.SearchAttributes = true
	return SubmitSweep(ctx, c.Client, c.Queue, in)
}

// failDeadSegment fails the started TrainSegment attempt of run name when nobody holds
// the run folder's lock, which that attempt's trainer holds for as long as its process
// lives: the process is gone, and the retry (per the segment's retry policy, 1 s later)
// need not wait out the dead attempt's heartbeat timeout (30 s by default, or whatever
// the run was given). The folder is the run's train.checkpoint.dir, resolved here as the
// worker of this process will resolve it (a folder missing here leaves the attempt to its
// heartbeat timeout); a run whose segment is held by a live process
// (another `herd run` sharing the server) is left alone once its trainer holds the lock.
// An attempt of a live process caught while it still builds its trainer, before it
// locks, is failed too: that costs a retry, never a result, since the lock lets only one
// trainer at a time write the folder. Data-parallel runs' rank segments are not handled:
// they still wait for their heartbeat timeout.
func failDeadSegment(ctx context.Context, c sdkclient.Client, name string) error {
	d, err := c.DescribeWorkflowExecution(ctx, name, "")
	if err != nil || d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil // Resume reports a missing run; one not running has no attempt in flight
	}
	for _, a := range d.GetPendingActivities() {
		if a.GetActivityType().GetName() != workflows.SegmentActivity || a.GetState() != enumspb.PENDING_ACTIVITY_STATE_STARTED {
			continue
		}
		in, err := firstInput(ctx, c, name)
		if err != nil {
			return err
		}
		free, err := unlocked(storage.Join(in.Config.Train.Checkpoint.Dir, in.Config.Name))
		if err != nil || !free {
			return err
		}
		gone := temporal.NewApplicationError(fmt.Sprintf("the process of attempt %d (%s) is gone: nobody holds the run folder's lock; retrying now",
			a.GetAttempt(), a.GetLastWorkerIdentity()), workflows.ErrAttemptGone)
		err = c.CompleteActivityByID(ctx, defaultNamespace, name, d.GetWorkflowExecutionInfo().GetExecution().GetRunId(), a.GetActivityId(), nil, gone)
		var nf *serviceerror.NotFound
		if err != nil && !errors.As(err, &nf) { // not found: the attempt ended meanwhile
			return fmt.Errorf("failing the dead attempt of run %s: %w", name, err)
		}
	}
	return nil
}

// unlocked reports whether nobody holds the lock of the run folder root. A folder that
// does not exist here tells nothing (the run may have been started from another working
// directory), nor does a bucket (s3://), which has no lock: it reports false, creates
// nothing, and the dead attempt is found by its heartbeat timeout.
func unlocked(root string) (bool, error) {
	if fi, err := os.Stat(root); storage.IsURL(root) || err != nil || !fi.IsDir() {
		return false, nil
	}
	l, err := checkpoint.LockDir(root)
	if errors.Is(err, checkpoint.ErrLocked) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, l.Close()
}

// FollowEvery is how often a following CLI refreshes its display.
const FollowEvery = 500 * time.Millisecond
