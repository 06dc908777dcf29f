package workflows

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herdml/herd/internal/gpu"
)

// Identity is how a worker of this process names itself: pid@host, as the SDK does, the
// queue, and its devices as NVML reports them, so that `herd status` and any Temporal UI
// show which machine and GPUs a segment ran on.
func Identity(queue string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%d@%s/%s [%s]", os.Getpid(), host, queue, devices())
}

// devices summarises this host's GPUs: "cpu" without a driver, else e.g. "8x NVIDIA H100".
func devices() string {
	h, err := gpu.List()
	switch {
	case errors.Is(err, gpu.ErrNoDriver) || (err == nil && len(h.Devices) == 0):
		return "cpu"
	case err != nil:
		return "gpus unknown: " + err.Error()
	}
	names := map[string]int{}
	var order []string
	for _, d := range h.Devices {
		if names[d.Name] == 0 {
			order = append(order, d.Name)
		}
		names[d.Name]++
	}
	parts := make([]string, len(order))
	for i, n := range order {
		parts[i] = fmt.Sprintf("%dx %s", names[n], n)
	}
	return strings.Join(parts, ", ")
}

// NewWorker builds a worker that runs TrainRun workflows and TrainSegment activities from
// queue. It trains acts.Segments segments at once (one if unset): a segment uses every
// core (or the GPU) it has.
// With acts.Ranks > 0 it also reserves ranks of data-parallel groups and trains them on
// a queue of its own (see ReserveRank).
func NewWorker(c client.Client, queue string, acts *Activities) worker.Worker {
	if acts.Identity == "" {
		acts.Identity = Identity(queue)
	}
	w := worker.New(c, queue, worker.Options{
		Identity:                           acts.Identity,
		MaxConcurrentActivityExecutionSize: max(acts.Segments, 1),
		// On Stop, a segment ends at its next step boundary and commits a checkpoint;
		// this is how long that may take before the SDK cancels it anyway.
		WorkerStopTimeout: 5 * time.Minute,
		// The SDK sends heartbeats at most every 0.8 heartbeat timeouts by default, so
		// `herd status` would show a step up to 8 s old; one a second is cheap.
		MaxHeartbeatThrottleInterval: time.Second,
	})
	w.RegisterWorkflowWithOptions(TrainRun, workflow.RegisterOptions{Name: WorkflowName})
	w.RegisterActivityWithOptions(acts.TrainSegment, activity.RegisterOptions{Name: SegmentActivity})
	registerSweep(w, c, acts)
	return withRanks(c, queue, acts, w)
}

// NewWorkflowWorker builds a worker that runs the TrainRun and Sweep workflow code from
// queue and trains nothing, so that queries and pause/stop updates are answered by a
// process that must not take up a segment.
func NewWorkflowWorker(c client.Client, queue string) worker.Worker {
	w := worker.New(c, queue, worker.Options{Identity: Identity(queue), LocalActivityWorkerOnly: true})
	w.RegisterWorkflowWithOptions(TrainRun, workflow.RegisterOptions{Name: WorkflowName})
	registerSweep(w, c, nil)
	return w
}
