package workflows

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/herdml/herd/trainer/collective"
)

// A run with parallel.data N > 1 trains as a group of N ranks, each a TrainRank segment
// pinned to the worker that reserved it. The workflow reserves the ranks (one ReserveRank
// per rank on the shared queue: any worker with a free rank slot takes it and opens the
// rank's collective listener), then starts every rank's segment on its worker's own
// queue with every rank's address. A rank that fails cancels its siblings, and the whole
// group is reserved and started again from the last committed checkpoint: no rank ever
// continues on state the others have left.

// ReserveActivity is the activity type that reserves one rank of a group.
const ReserveActivity = "ReserveRank"

// RankActivity is the activity type of one rank's segment, on its worker's own queue.
const RankActivity = "TrainRank"

// ReleaseActivity is the activity type that frees a reserved rank the group will not use
// (an elastic group that shrank), on the reserving worker's own queue.
const ReleaseActivity = "ReleaseRank"

// RankSegmentInput is one rank's segment: rank Rank of Group, whose ranks listen on Addrs.
type RankSegmentInput struct {
	SegmentInput
	Group string
	Rank  int
	Addrs []string
	// Token is the group's random token, fresh for each attempt of a group: every rank
	// presents it on every collective connection, loopback too, and refuses connections
	// without it (see groupToken). Empty in groups started before tokens were.
	Token string
}

// ErrBadToken is the application error type of a rank whose collective connections were
// refused for their token: its worker's $HERD_COLLECTIVE_TOKEN differs from its peers'.
// A retry would be refused the same way, so the run fails at once (resumable once the
// workers agree).
const ErrBadToken = "BadToken"

// groupToken is the token rank connections present: the group's own (run), joined with
// the token the worker was configured with ($HERD_COLLECTIVE_TOKEN), if any. Both must
// match: the group's keeps out every process that is not of this group attempt, and the
// configured one, which never travels through Temporal, every process that has not got
// it from the operator, even one that can read the run's history.
func groupToken(run, configured string) string {
	if configured == "" {
		return run
	}
	return run + "." + configured
}

// RankInput reserves rank Rank of the group Group (unique per attempt of a segment).
type RankInput struct {
	Group string
	Rank  int
}

// RankSlot is a reserved rank: the worker's own task queue, where its segment must run,
// the collective address it listens on, and what it runs on.
type RankSlot struct {
	Queue   string
	Addr    string
	Devices string
	Worker  string
}

// reserveTTL is how long a reserved listener waits for its segment before the slot is
// freed: a group whose other ranks could not be reserved must not hold workers forever.
const reserveTTL = 2 * time.Minute

// slots is a worker's rank slots: how many are free, and the listeners reserved but not
// yet taken by their segment.
type slots struct {
	mu   sync.Mutex
	free int
	held map[string]net.Listener // by group/rank
}

func slotKey(group string, rank int) string { return fmt.Sprintf("%s/%d", group, rank) }

// ReserveRank takes one of this worker's rank slots for in.Rank of in.Group and opens the
// rank's collective listener (port chosen by the system, on Activities.Listen). A worker
// with no free slot fails the attempt, and the retry may land on another worker.
func (a *Activities) ReserveRank(ctx context.Context, in RankInput) (RankSlot, error) {
	s := &a.slots
	s.mu.Lock()
	defer s.mu.Unlock()
	key := slotKey(in.Group, in.Rank)
	if old := s.held[key]; old != nil { // a retried reservation replaces its earlier self
		old.Close()
		delete(s.held, key)
		s.free++
	}
	if s.free <= 0 {
		return RankSlot{}, fmt.Errorf("worker %s has no free rank slot (it takes %d)", a.Identity, a.Ranks)
	}
	host := a.Listen
	if host == "" {
		host = "127.0.0.1"
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return RankSlot{}, fmt.Errorf("collective listener for rank %d: %w", in.Rank, err)
	}
	s.free--
	s.held[key] = lis
	time.AfterFunc(reserveTTL, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.held[key] == lis { // neither taken by its segment nor replaced
			lis.Close()
			delete(s.held, key)
			s.free++
		}
	})
	return RankSlot{Queue: a.rankQueue, Addr: lis.Addr().String(), Devices: devices(), Worker: a.Identity}, nil
}

// ReleaseRank frees the slot and closes the listener that ReserveRank took for in.Rank of
// in.Group, whose segment will not run: an elastic group shrank below the ranks it had
// reserved. A reservation already gone (taken, expired) is no error.
func (a *Activities) ReleaseRank(ctx context.Context, in RankInput) error {
	if lis := a.take(slotKey(in.Group, in.Rank)); lis != nil {
		lis.Close()
		a.release()
	}
	return nil
}

// take hands over the listener reserved under key, or nil.
func (a *Activities) take(key string) net.Listener {
	s := &a.slots
	s.mu.Lock()
	defer s.mu.Unlock()
	lis := s.held[key]
	delete(s.held, key)
	return lis
}

func (a *Activities) release() {
	a.slots.mu.Lock()
	a.slots.free++
	a.slots.mu.Unlock()
}

// rankQueueName is the task queue of one worker process's rank segments.
func rankQueueName(queue string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/ranks/%s/%d", queue, host, os.Getpid())
}

// groupSegment trains up to until as a group of parallel.data ranks, restarting the whole
// group from the last committed checkpoint after a failure (with the run's Retry
// backoff), up to attempts times. Like segment, it returns an error only for a user error,
// divergence or panic.
func (r *run) groupSegment(ctx workflow.Context, until int64, hb time.Duration, attempts int32) error {
	backoff, most := r.in.backoff()
	var err error
	// However it ends, the retries are over; the memo forgets them at its next update.
	defer func() { r.p.GroupAttempt, r.p.GroupFailure = 0, "" }()
	for attempt := int32(1); attempt <= attempts; attempt++ {
		if attempt > 1 {
			r.retrying(ctx, attempt, err)
			if workflow.Sleep(ctx, backoff) != nil {
				return nil // the workflow itself is ending
			}
			backoff = min(2*backoff, most)
		}
		// Unique per attempt, and deterministic: workflow time comes from the history.
		group := fmt.Sprintf("%s/%s/%d/%d", r.p.Name, workflow.GetInfo(ctx).WorkflowExecution.RunID,
			workflow.Now(ctx).UnixNano(), attempt)
		var res SegmentResult
		var ok bool
		res, ok, err = r.tryGroup(ctx, group, newGroupToken(ctx), until, hb)
		if err == nil {
			r.p.GroupAttempt, r.p.GroupFailure = 0, ""
		}
		if ok && (err == nil || res.Step > r.p.Step) {
			r.apply(res) // what the group committed counts, also before a failure
			r.set(ctx, r.p.State)
		}
		var app *temporal.ApplicationError
		switch {
		case ending(err) != nil:
			return err
		case err == nil, r.paused, r.stop:
			return nil
		case errors.As(err, &app) && app.Type() == ErrBadToken:
			r.p.Failures++
			r.p.Error = fmt.Sprintf("group segment to step %d failed, not retried: %v", until, err)
			r.set(ctx, StateFailed)
			return nil
		}
	}
	r.p.Failures++
	r.p.GroupAttempt, r.p.GroupFailure = 0, ""
	r.p.Error = fmt.Sprintf("group segment to step %d failed after %d attempts: %v", until, attempts, err)
	r.set(ctx, StateFailed)
	return nil
}

// newGroupToken is a fresh random token for one attempt of a group, recorded in the
// history (a side effect) so that a replay sees the same one. Runs whose history predates
// group tokens replay without one.
func newGroupToken(ctx workflow.Context) string {
	if workflow.GetVersion(ctx, "group-token", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return ""
	}
	var token string
	// A string always decodes: Get cannot fail here.
	_ = workflow.SideEffect(ctx, func(workflow.Context) any { return collective.NewToken() }).Get(&token)
	return token
}

// retrying records where clients see it (the memo) that the group goes on to attempt
// after failing with err, as the server shows a one-rank segment's retries. Histories
// recorded before it did so replay without the memo update.
func (r *run) retrying(ctx workflow.Context, attempt int32, err error) {
	r.p.GroupAttempt, r.p.GroupFailure = attempt, err.Error()
	if workflow.GetVersion(ctx, "group-retry-memo", workflow.DefaultVersion, 1) == 1 {
		r.set(ctx, r.p.State)
	}
}

// tryGroup reserves the ranks of group and runs their segments until all have ended. It
// returns the furthest committed step any rank reported (ok false when none did), and
// the first failure: once a rank fails, its siblings are cancelled, and a rank whose
// peer left fails too, so that later failures say nothing new. An elastic group (see
// RunInput.ElasticWait) that cannot reserve all its ranks in time trains on fewer: see
// shrink.
func (r *run) tryGroup(ctx workflow.Context, group, token string, until int64, hb time.Duration) (best SegmentResult, ok bool, first error) {
	gctx, cancel := workflow.WithCancel(ctx)
	r.cancel = cancel
	defer func() { r.cancel = nil }()
	n := r.in.Config.Parallel.Data
	slots, err := r.reserve(gctx, group, n)
	reason := fmt.Sprintf("all %d ranks reserved again", n)
	for err == nil && len(slots) < n { // only an elastic group gives up on a rank
		r.unreserve(gctx, slots, hb)
		reason = fmt.Sprintf("only %d of %d ranks reserved within the elastic wait (%s): a worker was lost",
			len(slots), n, r.in.ElasticWait)
		n = r.shrink(len(slots))
		group = fmt.Sprintf("%s/of%d", group, n)
		slots, err = r.reserve(gctx, group, n)
	}
	if err != nil {
		cancel()
		return best, false, err
	}
	r.resized(ctx, n, reason)
	in := r.segmentInput(until)
	in.Config.Parallel.Data = n
	addrs := make([]string, n)
	queues := make([]string, n)
	workers := make([]string, n)
	for i, slot := range slots {
		addrs[i], queues[i], workers[i] = slot.Addr, slot.Queue, slot.Worker
	}
	sel := workflow.NewSelector(ctx)
	for i, queue := range queues {
		sctx := workflow.WithActivityOptions(gctx, workflow.ActivityOptions{
			TaskQueue:              queue,
			ScheduleToStartTimeout: hb, // a worker that died after reserving is noticed soon
			StartToCloseTimeout:    7 * 24 * time.Hour,
			HeartbeatTimeout:       hb,
			WaitForCancellation:    true,
			// The group, not one rank, is retried: see groupSegment.
			RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
		})
		f := workflow.ExecuteActivity(sctx, RankActivity, RankSegmentInput{
			SegmentInput: in, Group: group, Rank: i, Addrs: addrs, Token: token})
		sel.AddFuture(f, func(f workflow.Future) {
			var res SegmentResult
			err := f.Get(ctx, &res)
			var canceled *temporal.CanceledError
			var app *temporal.ApplicationError
			reported := err == nil ||
				(errors.As(err, &canceled) && canceled.HasDetails() && canceled.Details(&res) == nil) ||
				(errors.As(err, &app) && app.HasDetails() && app.Details(&res) == nil)
			if reported && (!ok || res.Step > best.Step) {
				best, ok = res, true
			}
			if err != nil && first == nil && !errors.As(err, &canceled) {
				first = fmt.Errorf("rank %d on worker %s: %w", i, workers[i], err)
				cancel() // the siblings stop: none continues without this rank
			}
		})
	}
	for range queues {
		sel.Select(ctx)
	}
	if first == nil && gctx.Err() != nil {
		first = temporal.NewCanceledError() // paused or stopped
	}
	return best, ok, first
}

// reserve reserves the n ranks of group, in rank order. Without an elastic wait it waits
// until every rank is reserved, as long as that takes. With one, once the wait has passed
// with at least one rank reserved, it cancels the other reservations and returns the
// slots it holds, fewer than n (in no particular order), for the caller to release.
func (r *run) reserve(ctx workflow.Context, group string, n int) ([]reservation, error) {
	rctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	rctx = workflow.WithActivityOptions(rctx, workflow.ActivityOptions{
		// Waits in the queue until a worker has a free slot; the reservation itself is quick.
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second},
	})
	got := make([]reservation, n)
	var (
		reserved, pending = 0, n
		first             error
		givenUp, expired  bool
	)
	sel := workflow.NewSelector(ctx)
	for i := range got {
		got[i].RankInput = RankInput{Group: group, Rank: i}
		f := workflow.ExecuteActivity(rctx, ReserveActivity, got[i].RankInput)
		sel.AddFuture(f, func(f workflow.Future) {
			pending--
			err := f.Get(ctx, &got[i].RankSlot)
			switch {
			case err == nil:
				reserved++
			case first == nil && !givenUp:
				first = err
			}
		})
	}
	wait := r.in.ElasticWait
	arm := func() { sel.AddFuture(workflow.NewTimer(rctx, wait), func(workflow.Future) { expired = true }) }
	if wait > 0 {
		arm()
	}
	for reserved < n && first == nil {
		sel.Select(ctx)
		if expired && reserved < n {
			if reserved > 0 {
				break
			}
			expired = false // nothing to train on yet: keep waiting
			arm()
		}
	}
	if first != nil {
		return nil, first
	}
	if reserved == n {
		return got, nil
	}
	givenUp = true
	cancel()
	for pending > 0 { // a reservation may complete while it is being cancelled
		sel.Select(ctx)
	}
	var held []reservation
	for _, g := range got {
		if g.Queue != "" {
			held = append(held, g)
		}
	}
	return held, nil
}

// reservation is a reserved rank and its slot.
type reservation struct {
	RankInput
	RankSlot
}

// unreserve frees reserved slots that the group will not use, each on its worker's own
// queue. A release that fails (its worker died meanwhile) is left to reserveTTL.
func (r *run) unreserve(ctx workflow.Context, slots []reservation, hb time.Duration) {
	fs := make([]workflow.Future, len(slots))
	for i, s := range slots {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			TaskQueue:              s.Queue,
			ScheduleToCloseTimeout: hb,
			RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 1},
		})
		fs[i] = workflow.ExecuteActivity(actx, ReleaseActivity, s.RankInput)
	}
	for _, f := range fs {
		_ = f.Get(ctx, nil) // see above: the slot frees itself in the end
	}
}

// shrink is the world size an elastic group goes on with when only alive of its ranks
// could be reserved: the largest that divides the global batch into whole micro-batches
// per rank (the rule config validation applies to parallel.data); 1 always does. A
// committed checkpoint resumes bit-identically on it (docs/parallel.md).
func (r *run) shrink(alive int) int {
	cfg := r.in.Config
	for w := alive; w > 1; w-- {
		if cfg.Parallel.Data = w; cfg.Validate() == nil {
			return w
		}
	}
	return 1
}

// resized records that the group trains on n ranks from the committed step on, when that
// differs from the world size it trained on before (parallel.data, or the smaller one an
// elastic group shrank to): in the progress, so in the run's history (its memo) and in
// `herd status`.
func (r *run) resized(ctx workflow.Context, n int, reason string) {
	from := r.in.Config.Parallel.Data
	if r.p.World != 0 {
		from = r.p.World
	}
	if n == from {
		return
	}
	r.p.World = n
	if n == r.in.Config.Parallel.Data {
		r.p.World = 0
	}
	r.p.Resizes = append(r.p.Resizes, Resize{From: from, To: n, Step: r.p.Step, Reason: reason, Time: workflow.Now(ctx)})
	workflow.GetLogger(ctx).Info("data-parallel group resized", "from", from, "to", n, "step", r.p.Step, "reason", reason)
	r.set(ctx, r.p.State)
}

// rankWorker is a worker that also takes ranks: the shared queue's worker, which
// reserves them, and a worker on its own queue, which runs the reserved ranks' segments.
type rankWorker struct {
	worker.Worker
	own worker.Worker
}

// withRanks gives w its own queue for acts.Ranks rank segments, when acts takes ranks.
func withRanks(c client.Client, queue string, acts *Activities, w worker.Worker) worker.Worker {
	if acts.Ranks <= 0 {
		return w
	}
	acts.slots = slots{free: acts.Ranks, held: map[string]net.Listener{}}
	acts.rankQueue = rankQueueName(queue)
	w.RegisterActivityWithOptions(acts.ReserveRank, activity.RegisterOptions{Name: ReserveActivity})
	own := worker.New(c, acts.rankQueue, worker.Options{
		Identity:                           acts.Identity,
		MaxConcurrentActivityExecutionSize: acts.Ranks,
		WorkerStopTimeout:                  5 * time.Minute,
		MaxHeartbeatThrottleInterval:       time.Second,
	})
	own.RegisterActivityWithOptions(acts.TrainRank, activity.RegisterOptions{Name: RankActivity})
	own.RegisterActivityWithOptions(acts.ReleaseRank, activity.RegisterOptions{Name: ReleaseActivity})
	return &rankWorker{Worker: w, own: own}
}

func (w *rankWorker) Start() error {
	if err := w.own.Start(); err != nil {
		return err
	}
	if err := w.Worker.Start(); err != nil {
		w.own.Stop()
		return err
	}
	return nil
}

func (w *rankWorker) Run(interrupt <-chan any) error {
	if err := w.own.Start(); err != nil {
		return err
	}
	defer w.own.Stop()
	return w.Worker.Run(interrupt)
}

func (w *rankWorker) Stop() {
	w.Worker.Stop()
	w.own.Stop()
}
