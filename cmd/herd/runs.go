package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	sdkclient "go.temporal.io/sdk/client"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/client"
)

// temporalFlags say which Temporal server the orchestration commands talk to, and how
// they authenticate to it.
type temporalFlags struct {
	addr, namespace, queue, stateDir string
	auth                             authFlags
	ui                               temporalUIFlag // registered and checked by commands that may serve the embedded server
}

func (f *temporalFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.addr, "temporal", firstEnv("", "HERD_TEMPORAL", "TEMPORAL_ADDRESS"), "Temporal frontend host:port (default $HERD_TEMPORAL, else $TEMPORAL_ADDRESS; empty = herd's embedded server)")
	c.Flags().StringVar(&f.namespace, "namespace", firstEnv("default", "TEMPORAL_NAMESPACE"), "Temporal namespace ($TEMPORAL_NAMESPACE when set)")
	f.auth.register(c)
	c.Flags().StringVar(&f.queue, "queue", workflows.TaskQueue, "task queue of herd's workflows and workers")
	c.Flags().StringVar(&f.stateDir, "state-dir", client.StateDir(), "embedded server's state (default $HERD_HOME or ~/.herd)")
}

// command is `herd VERB NAME` against the same server as this one: with --state-dir when
// that is not the default, so that a hint the user copies reaches the run.
func (f *temporalFlags) command(verb, name string) string {
	cmd := "herd " + verb + " " + name
	if f.addr == "" && f.stateDir != client.StateDir() {
		cmd += " --state-dir " + f.stateDir
	}
	return cmd
}

// target is the server the flags name.
func (f *temporalFlags) target() client.Target {
	return client.Target{Addr: f.addr, Namespace: f.namespace, Queue: f.queue, StateDir: f.stateDir, Auth: f.auth.auth(), UI: f.ui.start}
}

// training is how this process trains when a command that trains (run, resume, sweep)
// starts the embedded server: its worker serves --metrics, trains segments segments at
// once (0 = one), and calls stopped, if set, for each segment its shutdown stopped (see
// workflows.Activities.Stopped).
type training struct {
	metrics  *metricsFlag
	log      io.Writer // where the metrics address is said
	segments int
	stopped  func(run string, res workflows.SegmentResult)
}

// connect is the launcher of every command that talks to Temporal (client.Connect): a
// client of --temporal if given; else of the herd process already serving the state dir;
// else of the embedded server, started here with a worker that trains as train says, or,
// with train nil, answers queries and updates but does not train. done releases it all.
func (f *temporalFlags) connect(train *training) (conn *client.Conn, done func(), err error) {
	if train == nil || !f.target().Embedded() {
		conn, err := client.Connect(f.target(), nil)
		if err != nil {
			return nil, nil, err
		}
		return conn, conn.Close, nil
	}
	rec, stopMetrics, err := train.metrics.start(train.log)
	if err != nil {
		return nil, nil, err
	}
	conn, err = client.Connect(f.target(), &workflows.Activities{Metrics: rec, BeforeStep: beforeStep, Segments: train.segments, Stopped: train.stopped})
	if err != nil {
		stopMetrics()
		return nil, nil, err
	}
	return conn, func() { conn.Close(); stopMetrics() }, nil
}

func newLsCmd() *cobra.Command {
	var (
		tf      temporalFlags
		jsonOut bool
	)
	c := &cobra.Command{
		Use:   "ls",
		Short: "List runs: state, step, loss",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			conn, done, err := tf.connect(nil)
			if err != nil {
				return err
			}
			defer done()
			runs, err := client.List(context.Background(), conn.Client)
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(c.OutOrStdout(), runs)
			}
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "RUN\tSTATE\tSTEP\tLOSS\tUPDATED")
			for _, r := range runs {
				st, loss := state(r), r.Loss
				if r.Segment != "" && r.Segment != client.SegmentTraining {
					st += " (" + r.Segment + ")"
				}
				if r.Live != nil {
					loss = r.Live.Loss
				}
				fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%s\n", r.Name, st, r.Step, r.Steps, lossText(loss), r.Updated.Local().Format(time.DateTime))
			}
			return w.Flush()
		},
	}
	tf.register(c)
	c.Flags().BoolVar(&jsonOut, "json", false, "print the runs as JSON")
	return c
}

// state is the run's own state, or the workflow's status when the workflow ended
// without saying (terminated, timed out).
func state(s client.Status) string {
	if s.State == "" || (s.Workflow != "Running" && s.State == workflows.StateRunning) {
		return strings.ToLower(s.Workflow)
	}
	return s.State
}

// lossText shows a loss, or "-" where none is known yet (0: no step trained).
func lossText(loss float64) string {
	if loss == 0 {
		return "-"
	}
	return fmt.Sprintf("%.4f", loss)
}

func newStatusCmd() *cobra.Command {
	return showCmd("status RUN", "Show a run: step, loss, tokens/s, ETA, checkpoints, attempts, worker",
		"print the status as JSON", client.GetStatus, printStatus)
}

// showCmd is a command that reads one workflow's state from the server and prints it as
// text or, with --json, as JSON: `herd status RUN`, `herd sweep status NAME`.
func showCmd[T any](use, short, jsonHelp string, get func(context.Context, sdkclient.Client, string) (T, error), print func(io.Writer, T)) *cobra.Command {
	var (
		tf      temporalFlags
		jsonOut bool
	)
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			conn, done, err := tf.connect(nil)
			if err != nil {
				return err
			}
			defer done()
			v, err := get(context.Background(), conn.Client, args[0])
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(c.OutOrStdout(), v)
			}
			print(c.OutOrStdout(), v)
			return nil
		},
	}
	tf.register(c)
	c.Flags().BoolVar(&jsonOut, "json", false, jsonHelp)
	return c
}

func printStatus(out io.Writer, s client.Status) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(w, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("run", "%s", s.Name)
	row("state", "%s", state(s))
	row("step", "%d of %d committed", s.Step, s.Steps)
	if s.Live != nil {
		row("training", "step %d, loss %s, %.0f tokens/s", s.Live.Step, lossText(s.Live.Loss), s.Live.TokensPerS)
	} else if s.Step > 0 {
		row("loss", "%s", lossText(s.Loss))
		row("tokens/s", "%.0f", s.TokensPerS)
	}
	if s.Segment != "" {
		row("segment", "%s", s.Segment)
	}
	if s.LastHeartbeat != nil {
		row("last heartbeat", "%s ago", time.Since(*s.LastHeartbeat).Round(time.Second))
	}
	if s.ETA != "" {
		row("ETA", "%s", s.ETA)
	}
	if s.Checkpoint != "" {
		row("checkpoint", "%s/%s", s.Dir, s.Checkpoint)
	}
	if len(s.Checkpoints) > 0 {
		row("checkpoints", "%s", strings.Join(s.Checkpoints, " "))
	}
	switch {
	case s.Attempt > 0 && s.MaxAttempts > 0:
		row("attempt", "%d of %d", s.Attempt, s.MaxAttempts)
	case s.Attempt > 0 && s.MaxAttempts < 0:
		row("attempt", "%d (no limit)", s.Attempt)
	case s.Attempt > 0:
		row("attempt", "%d", s.Attempt)
	}
	if s.Worker != "" {
		row("worker", "%s", s.Worker)
	}
	if s.World != 0 {
		row("ranks", "%d, below parallel.data until workers return (--elastic-wait)", s.World)
	}
	for _, z := range s.Resizes {
		row("resize", "%d → %d ranks at step %d: %s", z.From, z.To, z.Step, z.Reason)
	}
	if s.LastFailure != "" {
		row("last failure", "%s", s.LastFailure)
	}
	if s.Error != "" {
		row("error", "%s", s.Error)
	}
	for _, ch := range s.Lineage {
		row("changed", "%s", ch)
	}
	for _, warn := range s.Warnings {
		row("warning", "%s", warn)
	}
	_ = w.Flush()
}

// newControlCmd builds `herd pause` and `herd stop`.
func newControlCmd(update, short string) *cobra.Command {
	var tf temporalFlags
	c := &cobra.Command{
		Use:   update + " RUN",
		Short: short,
		Args:  exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			conn, done, err := tf.connect(nil)
			if err != nil {
				return err
			}
			defer done()
			p, err := client.Control(context.Background(), conn.Client, args[0], update)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: %s at step %d; `%s` continues it\n", p.Name, update, p.Step, tf.command("resume", p.Name))
			return nil
		},
	}
	tf.register(c)
	return c
}

func newPauseCmd() *cobra.Command {
	return newControlCmd(workflows.UpdatePause, "Pause a run after checkpointing the step it is on")
}

func newStopCmd() *cobra.Command {
	return newControlCmd(workflows.UpdateStop, "End a run after checkpointing the step it is on")
}

func newResumeCmd() *cobra.Command {
	var (
		tf      temporalFlags
		mf      metricsFlag
		detach  bool
		jsonOut bool
		sets    []string
		ext     config.Extension
	)
	c := &cobra.Command{
		Use:   "resume RUN",
		Short: "Continue a paused, stopped or failed run from its last committed checkpoint, or train a run longer",
		Long: "Continue a paused, stopped or failed run from its last committed checkpoint, also after the\n" +
			"process that ran it, embedded server included, was killed. Without --temporal this process\n" +
			"serves the embedded server and trains; with it, resume only asks and then follows.\n\n" +
			"--set parallel.data=N continues on N ranks (same global batch): the checkpoint is the same\n" +
			"for every world size, and the run reads the same samples in the same order.\n\n" +
			"--steps N trains on to N steps in all, also a completed run; a constant schedule, and a wsd\n" +
			"one not yet in its decay, extend by themselves; cosine and linear need --schedule restart\n" +
			"(a new curve from here to N, from the peak LR) or stretch (the same curve over N steps).\n" +
			"--lr and --set train.schedule.KEY=V change the peak LR and the schedule. Every change is\n" +
			"printed, kept in the run's lineage (herd status) and in its checkpoints' state.json.",
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			opts, err := resumeSets(sets)
			if err != nil {
				return err
			}
			ext.Sets = opts.Sets
			opts.Extension = ext
			if detach && tf.target().Embedded() {
				return detachNeedsServer()
			}
			ctx, stop := interruptContext()
			defer stop()
			conn, done, err := tf.connect(&training{metrics: &mf, log: c.ErrOrStderr()})
			if err != nil {
				return err
			}
			defer done()
			changes, err := conn.ResumeRun(ctx, name, opts)
			if err != nil {
				return err
			}
			if err := printChanges(ctx, c.ErrOrStderr(), conn.Client, name, changes); err != nil {
				return err
			}
			if detach {
				fmt.Fprintf(c.OutOrStdout(), "%s: resumed; `herd status %s` shows it\n", name, name)
				return nil
			}
			d := newFollowDisplay(c.ErrOrStderr())
			p, err := client.Follow(ctx, conn.Client, name, client.FollowEvery, d.show)
			d.finish()
			return finishRun(c, &tf, name, p, err, jsonOut)
		},
	}
	tf.register(c)
	mf.register(c)
	c.Flags().BoolVar(&detach, "detach", false, "return once resumed instead of following (needs --temporal or a running herd server)")
	c.Flags().BoolVar(&jsonOut, "json", false, "print the final progress as JSON")
	c.Flags().StringArrayVar(&sets, "set", nil, "parallel.data=N: continue on N ranks; train.schedule.KEY=V: change the schedule")
	c.Flags().IntVar(&ext.Steps, "steps", 0, "train on to this many steps in all (0 = the run's train.steps)")
	c.Flags().Float64Var(&ext.LR, "lr", 0, "new peak learning rate, train.optim.lr (0 = unchanged)")
	c.Flags().StringVar(&ext.Schedule, "schedule", "", "how --steps carries a cosine or linear schedule: restart | stretch")
	return c
}

// printChanges says what a resume changed in run name, and what that implies
// (config.Run.Notes).
func printChanges(ctx context.Context, w io.Writer, c sdkclient.Client, name string, changes []config.Change) error {
	if len(changes) == 0 {
		return nil
	}
	for _, ch := range changes {
		fmt.Fprintf(w, "%s: changed %s\n", name, ch)
	}
	cfg, err := client.RunConfig(ctx, c, name)
	if err != nil {
		return err
	}
	for _, n := range cfg.Notes(changes) {
		fmt.Fprintf(w, "%s: note %s\n", name, n)
	}
	return nil
}

// resumeSets reads resume's --set flags: parallel.data, since the run's checkpoints
// resume on any number of ranks, and the keys a resume may change in the training
// (config.Resumable: the length, the peak LR, the schedule), which the run checks.
func resumeSets(sets []string) (workflows.ResumeInput, error) {
	var opts workflows.ResumeInput
	for _, s := range sets {
		key, val, _ := strings.Cut(s, "=")
		if key != "parallel.data" {
			opts.Sets = append(opts.Sets, s)
			continue
		}
		n, err := strconv.Atoi(val)
		if err != nil || n <= 0 {
			return opts, usererr.New("--set "+s, "parallel.data must be a positive integer, got %q", val)
		}
		opts.Data = n
	}
	return opts, nil
}
