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

	"github.com/herdml/herd/trainer/checkpoint"
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

// localRanks is how many ranks the in-process worker of `herd run` (no server of one's
// own) takes: enough for a data-parallel run on one machine over loopback.
const localRanks = 8

// Local is herd's own Temporal, used when no --temporal address is given: the embedded
// server on the state directory, or, when another herd process already serves that
// directory, a connection to it. With a worker it also trains in this process.
type Local struct {
	Client sdkclient.Client
	Addr   string
	srv    *devserver.Server // nil when another process serves
	w      worker.Worker
}

// StartLocal starts (or joins) the embedded server on stateDir and a worker on queue.
// With acts the worker trains; without, it only runs workflow code, so that queries and
// pause/stop updates are answered without this process taking up a segment.
func StartLocal(stateDir, queue string, acts *workflows.Activities) (*Local, error) {
	l := &Local{}
	srv, err := devserver.Start(devserver.Options{StateDir: stateDir})
	var busy *devserver.BusyError
	switch {
	case errors.As(err, &busy):
		l.Addr = busy.Addr
	case err != nil:
		return nil, err
	default:
		l.srv, l.Addr = srv, srv.Addr()
	}
	if l.Client, err = DialServing(stateDir, l.Addr, ""); err != nil {
		l.Close()
		return nil, err
	}
	if acts != nil {
		if acts.Ranks == 0 {
			acts.Ranks = localRanks
		}
		l.w = workflows.NewWorker(l.Client, queue, acts)
	} else {
		l.w = workflows.NewWorkflowWorker(l.Client, queue)
	}
	if err := l.w.Start(); err != nil {
		l.Close()
		return nil, fmt.Errorf("starting the in-process worker: %w", err)
	}
	return l, nil
}

// Close stops the worker (which first checkpoints a segment in flight), then the server.
func (l *Local) Close() {
	if l.w != nil {
		l.w.Stop()
	}
	if l.Client != nil {
		l.Client.Close()
	}
	if l.srv != nil {
		l.srv.Stop()
	}
}

// RunLocal is `herd run` without --temporal: it starts or joins the embedded server,
// starts a worker in this process, submits the run (or attaches to it) and follows it to
// its end, calling show on every tick.
func RunLocal(ctx context.Context, stateDir string, in workflows.RunInput, acts *workflows.Activities, show func(Status)) (workflows.Progress, error) {
	l, err := StartLocal(stateDir, workflows.TaskQueue, acts)
	if err != nil {
		return workflows.Progress{}, err
	}
	defer l.Close()
	in.SearchAttributes = true
	if _, err := Submit(ctx, l.Client, workflows.TaskQueue, in); err != nil {
		return workflows.Progress{}, err
	}
	return Follow(ctx, l.Client, in.Config.Name, FollowEvery, show)
}

// ResumeLocal is `herd resume` without --temporal, also after the process that ran the
// run, server included, was killed: the server comes back on the same file, the dead
// segment's attempt is failed at once (see failDeadSegment) rather than left to its
// heartbeat timeout, and this process's worker retries it from the last committed
// checkpoint.
func ResumeLocal(ctx context.Context, stateDir, name string, opts workflows.ResumeInput, acts *workflows.Activities, show func(Status)) (workflows.Progress, error) {
	l, err := StartLocal(stateDir, workflows.TaskQueue, acts)
	if err != nil {
		return workflows.Progress{}, err
	}
	defer l.Close()
	if err := failDeadSegment(ctx, l.Client, name); err != nil {
		return workflows.Progress{}, err
	}
	if err := Resume(ctx, l.Client, workflows.TaskQueue, name, opts); err != nil {
		return workflows.Progress{}, err
	}
	return Follow(ctx, l.Client, name, FollowEvery, show)
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
		free, err := unlocked(filepath.Join(in.Config.Train.Checkpoint.Dir, in.Config.Name))
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
// directory): it reports false, and creates nothing.
func unlocked(root string) (bool, error) {
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
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
