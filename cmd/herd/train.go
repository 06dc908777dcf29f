package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/preempt"
	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/trainer"
)

// trainSummary is what `herd train --json` prints at the end.
type trainSummary struct {
	Run         string  `json:"run"`
	Steps       int64   `json:"steps"`                   // optimizer steps completed
	TrainLoss   float64 `json:"train_loss"`              // mean loss of the last (up to) 10 steps of this invocation; 0 if none ran
	EvalLoss    float64 `json:"eval_loss,omitempty"`     // at the last step; absent without eval data
	BitsPerByte float64 `json:"bits_per_byte,omitempty"` // eval loss / ln 2 (byte-level tokens)
	TokensPerS  float64 `json:"tokens_per_s"`            // training tokens over training step time, this invocation
	Checkpoint  string  `json:"checkpoint"`              // the last checkpoint's folder
	ResumedFrom string  `json:"resumed_from,omitempty"`
}

func newTrainCmd() *cobra.Command {
	var (
		f     configFlags
		mf    metricsFlag
		steps stepsFlag
		grace graceFlag
		out   string
	)
	c := &cobra.Command{
		Use:   "train CONFIG",
		Short: "Train in this process, resuming from the run's newest checkpoint",
		Long: "Train in this process, resuming from the run's newest checkpoint.\n\n" +
			"SIGTERM or Ctrl-C stops it after the step in flight: it checkpoints that step and exits 0,\n" +
			"saying where it stopped; the same command resumes there. Past --grace, or on a second\n" +
			"signal, it exits 1 at once, and the newest checkpoint before it stays the one it resumes from.",
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := grace.check(); err != nil {
				return err
			}
			run, err := f.load(args[0], steps.sets(c)...)
			if err != nil {
				return err
			}
			rec, stopMetrics, err := mf.start(c.ErrOrStderr())
			if err != nil {
				return err
			}
			defer stopMetrics()
			p := newProgress(c.ErrOrStderr())
			var committed int64 // the newest checkpoint's step
			tr, err := trainer.New(run, trainer.Options{
				OutDir:     out,
				BeforeStep: beforeStep,
				Progress: func(st trainer.Stats) {
					p.update(st)
					rec.Observe(run.Name, 0, st)
					if st.Checkpoint != "" {
						committed = st.Step
					}
				},
				Warn: func(w string) { p.println("warning: " + w) },
			})
			if err != nil {
				return err
			}
			defer tr.Close()
			sum := trainSummary{Run: run.Name}
			if sum.ResumedFrom, err = tr.Resume(""); err != nil {
				return err // a refused checkpoint (another config or base) is the one line printed
			}
			committed = tr.StepCount()
			p.println("kernels: " + tr.Kernels())
			if err := device.CheckEnv(); err != nil {
				p.println("warning: " + err.Error())
			}
			if sum.ResumedFrom != "" {
				p.println(fmt.Sprintf("resuming %s from %s", run.Name, storage.Join(tr.CheckpointDir(), sum.ResumedFrom)))
			}
			p.start(tr.StepCount())
			resume := "the same `herd train` command resumes from the newest checkpoint in " + tr.CheckpointDir()
			stop := grace.watch(c, func() string { return resume })
			defer stop.Done()
			last, err := tr.Run(stop.Context(), 0)
			p.finish()
			stopped := errors.Is(err, context.Canceled)
			if stopped {
				last.Checkpoint, err = checkpointStop(tr, committed)
			}
			if err != nil {
				return err
			}
			stop.Done()
			if stopped {
				p.println(fmt.Sprintf("%s: stopped by %s at step %d of %d, checkpoint %s; %s", run.Name,
					preempt.Name(stop.Signal()), tr.StepCount(), run.Train.Steps, filepath.Join(tr.CheckpointDir(), last.Checkpoint), resume))
			}
			sum.Steps = tr.StepCount()
			sum.TrainLoss, sum.TokensPerS = p.trainLoss(), p.tokensPerS()
			if last.Checkpoint != "" {
				sum.Checkpoint = storage.Join(tr.CheckpointDir(), last.Checkpoint)
			} else if sum.ResumedFrom != "" { // nothing left to train
				sum.Checkpoint = storage.Join(tr.CheckpointDir(), sum.ResumedFrom)
			}
			ev := last.Eval
			if ev == nil && run.Data.Eval != "" && !stopped { // a stopped run has no time to spare
				res, err := tr.Eval(run.Train.Eval.Batches)
				if err != nil {
					return err
				}
				ev = &res
			}
			if ev != nil {
				sum.EvalLoss, sum.BitsPerByte = ev.Loss, ev.BitsPerByte
			}
			if f.json {
				return printJSON(c.OutOrStdout(), sum)
			}
			w := c.OutOrStdout()
			if p.tokens == 0 {
				fmt.Fprintf(w, "%s: already trained %d steps\n", sum.Run, sum.Steps)
			} else {
				fmt.Fprintf(w, "%s: %d steps, train loss %.4f (mean of the last %d steps), %.0f tokens/s\n",
					sum.Run, sum.Steps, sum.TrainLoss, len(p.losses), sum.TokensPerS)
			}
			if ev != nil {
				fmt.Fprintf(w, "eval loss %.4f, %.4f bits per byte\n", sum.EvalLoss, sum.BitsPerByte)
			}
			fmt.Fprintf(w, "checkpoint %s\n", sum.Checkpoint)
			return nil
		},
	}
	f.register(c)
	mf.register(c)
	steps.register(c)
	grace.register(c)
	c.Flags().StringVar(&out, "out", "", "checkpoint root, instead of train.checkpoint.dir; the run writes under DIR/<name>")
	return c
}

// progress shows training (and `herd eval`) as it goes: one line rewritten in place on a
// terminal, and a plain line every few seconds otherwise, so that logs stay readable.
// Evaluations and checkpoints get lines of their own.
type progress struct {
	w        io.Writer
	tty      bool
	began    time.Time
	first    int64         // step the invocation started from
	shown    time.Time     // when the last plain line was printed
	losses   []float64     // last 10 steps' losses
	tokens   int64         // tokens trained in this invocation
	stepTime time.Duration // time spent in steps, from the trainer's tokens/s
	pending  bool          // a rewritable line is on screen
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			tty = fi.Mode()&os.ModeCharDevice != 0
		}
	}
	return &progress{w: w, tty: tty}
}

func (p *progress) start(step int64) { p.first, p.began, p.shown = step, time.Now(), time.Now() }

func (p *progress) update(st trainer.Stats) {
	p.losses = append(p.losses, st.Loss)
	if len(p.losses) > 10 {
		p.losses = p.losses[1:]
	}
	p.tokens += st.Tokens
	if st.TokensPerS > 0 {
		p.stepTime += time.Duration(float64(st.Tokens) / st.TokensPerS * float64(time.Second))
	}
	done := st.Step - p.first
	eta := time.Duration(float64(time.Since(p.began)) / float64(done) * float64(int64(st.Steps)-st.Step)).Round(time.Second)
	// tokens/s is the mean over this invocation: one step's figure jumps with the machine's load.
	line := fmt.Sprintf("step %d/%d  loss %.4f  lr %.2e  %.0f tokens/s  ETA %s", st.Step, st.Steps, st.Loss, st.LR, p.tokensPerS(), eta)
	if st.Eval != nil {
		p.println(fmt.Sprintf("step %d: eval loss %.4f, %.4f bits per byte", st.Step, st.Eval.Loss, st.Eval.BitsPerByte))
	}
	if st.Checkpoint != "" {
		p.println(fmt.Sprintf("step %d: checkpoint %s", st.Step, st.Checkpoint))
	}
	p.show(line, st.Step == int64(st.Steps))
}

// show puts the progress line on screen: rewritten in place on a terminal; otherwise
// printed when ten seconds have passed since the last one, and always when it is the last.
func (p *progress) show(line string, last bool) {
	switch {
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.pending = true
	case time.Since(p.shown) >= 10*time.Second || last:
		fmt.Fprintln(p.w, line)
		p.shown = time.Now()
	}
}

// println prints a line of its own, above the rewritable one.
func (p *progress) println(s string) {
	if p.pending {
		fmt.Fprint(p.w, "\r\033[K")
		p.pending = false
	}
	fmt.Fprintln(p.w, s)
}

func (p *progress) finish() {
	if p.pending {
		fmt.Fprintln(p.w)
		p.pending = false
	}
}

func (p *progress) trainLoss() float64 {
	var s float64
	for _, l := range p.losses {
		s += l
	}
	if len(p.losses) == 0 {
		return 0
	}
	return s / float64(len(p.losses))
}

func (p *progress) tokensPerS() float64 {
	if p.stepTime <= 0 {
		return 0
	}
	return float64(p.tokens) / p.stepTime.Seconds()
}
