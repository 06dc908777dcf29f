package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/preempt"
	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/sysmem"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/client"
)

func newRunCmd() *cobra.Command {
	var (
		f       configFlags
		steps   stepsFlag
		tf      temporalFlags
		mf      metricsFlag
		detach  bool
		segment int64
		hb      time.Duration
		elastic elasticWait
		grace   graceFlag
		retry   retryFlags
		uf      uiFlags
	)
	c := &cobra.Command{
		Use:   "run CONFIG",
		Short: "Train as a durable Temporal workflow that survives crashes and resumes exactly",
		Long: "Train as a durable Temporal workflow (ID = run name: launching twice attaches).\n" +
			"Without --temporal (or $HERD_TEMPORAL) herd starts its embedded Temporal server on the\n" +
			"state dir and a worker in this process; with it, herd submits and follows, and `herd worker`\n" +
			"processes train.\n\n" +
			"SIGTERM or Ctrl-C: on the embedded server, the step in flight finishes and is checkpointed,\n" +
			"and herd exits 0 saying where the run stopped (`herd resume` continues it); past --grace, or\n" +
			"on a second signal, it exits 1 at once, the newest checkpoint before it staying where the run\n" +
			"resumes. With --temporal it stops following, and the run goes on.",
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := grace.check(); err != nil {
				return err
			}
			wait, err := elastic.value()
			if err != nil {
				return err
			}
			run, err := f.load(args[0], steps.sets(c)...)
			if err != nil {
				return err
			}
			if err := absolutePaths(&run); err != nil {
				return err
			}
			in := workflows.RunInput{Config: run, SegmentSteps: segment, HeartbeatTimeout: hb, ElasticWait: wait}
			if in.Retry, err = retry.retry(); err != nil {
				return err
			}
			out, errw := c.OutOrStdout(), c.ErrOrStderr()
			if tf.target().Embedded() {
				if detach {
					return detachNeedsServer()
				}
				if err := tf.ui.check(false); err != nil {
					return err
				}
				// The embedded worker trains every rank in this process: refuse now what
				// would not fit, rather than submit a run that fails.
				if err := run.CheckMemory(run.Parallel.Data, sysmem.Lookup()); err != nil {
					return err
				}
			}
			site, err := dashboardOf(&tf, &uf)
			if err != nil {
				return err
			}
			defer site.close()
			stop := grace.watch(c, func() string {
				return fmt.Sprintf("`%s` continues it from its newest checkpoint", tf.command("resume", run.Name))
			})
			defer stop.Done()
			ctx := stop.Context()
			var stopped stoppedAt
			conn, done, err := tf.connect(&training{metrics: &mf, log: errw, stopped: stopped.record(run.Name)})
			if err != nil {
				return err
			}
			done = sync.OnceFunc(done)
			defer done()
			attached, err := conn.SubmitRun(ctx, in)
			if err != nil {
				return err
			}
			defer site.serveIf(conn, errw)() // once submitted, as the intro below

			d := newFollowDisplay(errw)
			if conn.InProcess() {
				// Said once the run is submitted: a refused launch prints its error alone.
				d.intro = fmt.Sprintf("run %s on the embedded Temporal server (%s). Ctrl-C checkpoints and stops; `%s` continues.",
					run.Name, tf.stateDir, tf.command("resume", run.Name))
				if u := conn.UIURL(); u != "" {
					d.intro += "\nTemporal UI at " + u
				}
			} else {
				verb := "started"
				if attached {
					verb = "already running; attached"
				}
				if detach {
					if f.json {
						return printJSON(out, map[string]any{"run": run.Name, "attached": attached})
					}
					fmt.Fprintf(out, "run %s %s. `herd status %s` shows it, `herd run %s` follows it.\n", run.Name, verb, run.Name, args[0])
					return nil
				}
				fmt.Fprintf(errw, "run %s %s. Ctrl-C stops following; the run goes on (`herd status %s`).\n", run.Name, verb, run.Name)
			}
			p, err := client.Follow(ctx, conn.Client, run.Name, client.FollowEvery, d.show)
			d.finish()
			if errors.Is(err, context.Canceled) && conn.InProcess() {
				done() // the worker of this process stops: its segment commits the step it is on
				stop.Done()
				fmt.Fprintf(errw, "run %s stopped by %s%s; `%s` shows it, `%s` continues it\n", run.Name,
					preempt.Name(stop.Signal()), stopped.String(), tf.command("status", run.Name), tf.command("resume", run.Name))
				return nil
			}
			return finishRun(c, &tf, run.Name, p, err, f.json)
		},
	}
	f.register(c)
	steps.register(c)
	tf.register(c)
	tf.ui.register(c, "off")
	mf.register(c)
	c.Flags().BoolVar(&detach, "detach", false, "return once submitted instead of following (needs --temporal or a running herd server)")
	c.Flags().Int64Var(&segment, "segment-steps", 0, "steps per TrainSegment activity (default train.checkpoint.every)")
	c.Flags().DurationVar(&hb, "heartbeat-timeout", 0, "how long a silent segment may go before it is retried elsewhere (default 30s)")
	elastic.register(c)
	grace.register(c)
	retry.register(c)
	uf.register(c, "the embedded server's runs")
	return c
}

// elasticWait is the --elastic-wait flag of herd run and herd sweep: how long a
// data-parallel group waits for a lost worker's replacement before it goes on with fewer
// ranks (workflows.RunInput.ElasticWait).
type elasticWait time.Duration

func (e *elasticWait) register(c *cobra.Command) {
	c.Flags().DurationVar((*time.Duration)(e), "elastic-wait", 0,
		"with parallel.data > 1: how long to wait for a lost worker's replacement before going on with fewer ranks, growing back when workers return (0 = wait for all ranks)")
}

// value is the wait; a negative one is a user error.
func (e elasticWait) value() (time.Duration, error) {
	if e < 0 {
		return 0, usererr.New("--elastic-wait", "must be 0 (wait for every rank) or a positive duration such as 1m, got %s", time.Duration(e))
	}
	return time.Duration(e), nil
}

// stoppedAt is where the shutdown of this process's worker stopped a run's segment, if
// it did (see workflows.Activities.Stopped).
type stoppedAt struct {
	mu  sync.Mutex
	res *workflows.SegmentResult
}

// record returns the Stopped callback that records run's segment.
func (s *stoppedAt) record(run string) func(string, workflows.SegmentResult) {
	return func(name string, res workflows.SegmentResult) {
		if name == run {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.res = &res
		}
	}
}

// String says where the run stopped: " at step N, checkpoint DIR", or "" when no segment
// was training (the run stands at its newest checkpoint).
func (s *stoppedAt) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.res == nil {
		return ""
	}
	return fmt.Sprintf(" at step %d, checkpoint %s", s.res.Step, filepath.Join(s.res.Dir, s.res.Checkpoint))
}

// absolutePaths makes the config's local paths absolute: a worker in another directory,
// or on another host with the same mounts, must read and write the same files.
func absolutePaths(run *config.Run) error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("resolving relative paths: %w", err)
	}
	run.ResolvePaths(wd)
	return nil
}

func detachNeedsServer() error {
	return usererr.New("--detach", "the embedded server lives in this process and would stop with it; "+
		"start `herd server` and `herd worker`, then pass --temporal (or drop --detach)")
}

// interruptContext is cancelled by Ctrl-C or SIGTERM.
func interruptContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// finishRun prints how the followed run name, on tf's server, ended. A run that failed
// (retries exhausted) is an error, exit status 1, whose one line says how to resume it.
func finishRun(c *cobra.Command, tf *temporalFlags, name string, p workflows.Progress, err error, jsonOut bool) error {
	var failed *client.FailedError
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(c.ErrOrStderr(), "stopped following %s; `%s` shows it, `%s` continues it\n", name, tf.command("status", name), tf.command("resume", name))
		return nil
	case errors.As(err, &failed):
		return fmt.Errorf("%w; it waits: `%s` continues it from its newest checkpoint", err, tf.command("resume", name))
	case err != nil:
		return err
	}
	if jsonOut {
		return printJSON(c.OutOrStdout(), p)
	}
	for _, w := range p.Warnings {
		fmt.Fprintln(c.ErrOrStderr(), "warning: "+w)
	}
	fmt.Fprintf(c.OutOrStdout(), "%s: %s at step %d/%d, loss %.4f, checkpoint %s\n",
		p.Name, p.State, p.Step, p.Steps, p.Loss, storage.Join(p.Dir, p.Checkpoint))
	return nil
}

// followDisplay shows a followed run: a progress bar on a terminal, a plain line every ten
// seconds otherwise, so that logs stay readable.
type followDisplay struct {
	w     io.Writer
	bar   *progressbar.ProgressBar
	shown time.Time
	last  string
	intro string // if set, a line printed before the first status
}

func newFollowDisplay(w io.Writer) *followDisplay {
	d := &followDisplay{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			d.bar = progressbar.NewOptions64(1, progressbar.OptionSetWriter(w), progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(false), progressbar.OptionThrottle(100*time.Millisecond))
		}
	}
	return d
}

func (d *followDisplay) show(s client.Status) {
	if d.intro != "" {
		fmt.Fprintln(d.w, d.intro)
		d.intro = ""
	}
	step, loss, tps := s.Step, s.Loss, s.TokensPerS
	if s.Live != nil {
		step, loss, tps = s.Live.Step, s.Live.Loss, s.Live.TokensPerS
	}
	if tps == 0 && s.Workflow == "Running" {
		return // nothing trained yet: no numbers worth a line
	}
	line := fmt.Sprintf("%s  loss %s  %.0f tokens/s", state(s), lossText(loss), tps)
	if s.ETA != "" {
		line += "  ETA " + s.ETA
	}
	if s.Segment != "" && s.Segment != client.SegmentTraining {
		line += "  " + s.Segment
	}
	if s.Attempt > 1 {
		line += fmt.Sprintf("  attempt %d", s.Attempt)
	}
	if d.bar != nil {
		d.bar.ChangeMax64(max(s.Steps, 1))
		d.bar.Describe(line)
		_ = d.bar.Set64(step)
		return
	}
	line = fmt.Sprintf("step %d/%d  %s", step, s.Steps, line)
	if line != d.last && time.Since(d.shown) >= 10*time.Second {
		fmt.Fprintln(d.w, line)
		d.shown, d.last = time.Now(), line
	}
}

func (d *followDisplay) finish() {
	if d.bar != nil {
		_ = d.bar.Finish()
		fmt.Fprintln(d.w)
	}
}
