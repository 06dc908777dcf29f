package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/client"
	"github.com/herdml/herd/workflows/results"
	"github.com/herdml/herd/workflows/sweep"
)

func newSweepCmd() *cobra.Command {
	var (
		tf      temporalFlags
		mf      metricsFlag
		jsonOut bool
		out     string
		elastic elasticWait
		retry   retryFlags
		uf      uiFlags
	)
	c := &cobra.Command{
		Use:   "sweep SWEEP.yaml",
		Short: "Search hyperparameters as a durable workflow: trials as runs, ASHA early stopping, MetaP transfer",
		Long: "Start (or attach to) the sweep the file describes and follow it to its end, then write\n" +
			"its results: trials.csv and trials.parquet (every trial's values and metrics),\n" +
			"metric.png (the metric against each parameter) and, for a sweep over\n" +
			"train.optim.lr, lr.png (the metric against log2 LR, one curve per value of the\n" +
			"key with the most values, one panel per value of the others, optima ringed) and\n" +
			"optimal_lr.csv (each curve's best LR and each panel's octave shift, also printed).\n" +
			"`herd sweep status NAME` shows a sweep;\n" +
			"`herd stop NAME` stops it; `herd resume NAME` continues it after a crash.",
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			wait, err := elastic.value()
			if err != nil {
				return err
			}
			s, err := sweep.Load(args[0])
			if err != nil {
				return err
			}
			in, err := sweepInput(s)
			if err != nil {
				return err
			}
			in.ElasticWait = wait
			if in.Retry, err = retry.retry(); err != nil {
				return err
			}
			if tf.target().Embedded() {
				if err := tf.ui.check(false); err != nil {
					return err
				}
			}
			if out == "" {
				out = storage.Join(s.Base.Train.Checkpoint.Dir, s.Name)
			}
			local, upload, err := destination(out, "the sweep's results (--out)")
			if err != nil {
				return err
			}
			if upload != nil {
				defer os.RemoveAll(local)
			}
			site, err := dashboardOf(&tf, &uf)
			if err != nil {
				return err
			}
			defer site.close()
			ctx, stop := interruptContext()
			defer stop()
			errw := c.ErrOrStderr()
			// An embedded worker trains the sweep's max_concurrent trials side by side.
			conn, done, err := tf.connect(&training{metrics: &mf, log: errw, segments: s.MaxConcurrent})
			if err != nil {
				return err
			}
			defer done()
			if conn.InProcess() {
				fmt.Fprintf(errw, "sweep %s: %d trials on the embedded Temporal server (%s). Ctrl-C stops following; `%s` continues.\n",
					s.Name, len(s.Trials), tf.stateDir, tf.command("resume", s.Name))
				if u := conn.UIURL(); u != "" {
					fmt.Fprintf(errw, "Temporal UI at %s\n", u)
				}
			}
			if _, err := conn.SubmitSweep(ctx, in); err != nil {
				return err
			}
			defer site.serveIf(conn, errw)() // once submitted: a refused sweep prints its error alone
			show := func(p workflows.SweepProgress) { fmt.Fprintf(errw, "\r%s", sweepLine(p)) }
			p, err := client.FollowSweep(ctx, conn.Client, s.Name, client.FollowEvery, show)
			fmt.Fprintln(errw)
			if err != nil {
				return err
			}
			files, err := writeSweepResults(p, local)
			if err == nil && upload != nil {
				err = upload.PutDir(local)
				for i, f := range files {
					files[i] = storage.Join(out, filepath.Base(f))
				}
			}
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(c.OutOrStdout(), map[string]any{"sweep": p, "files": files, "optimal_lr": results.Sweep(p).OptimalLRs()})
			}
			printSweep(c.OutOrStdout(), p)
			results.Sweep(p).PrintOptimalLR(c.OutOrStdout())
			fmt.Fprintf(c.OutOrStdout(), "results: %s\n", strings.Join(files, ", "))
			return nil
		},
	}
	tf.register(c)
	tf.ui.register(c, "off")
	mf.register(c)
	retry.register(c)
	c.Flags().BoolVar(&jsonOut, "json", false, "print the sweep's final state as JSON on stdout")
	c.Flags().StringVar(&out, "out", "", "folder for trials.csv, trials.parquet and the plots (default: the base config's checkpoint dir/sweep name)")
	elastic.register(c)
	uf.register(c, "the embedded server's runs")
	c.AddCommand(newSweepStatusCmd())
	return c
}

func newSweepStatusCmd() *cobra.Command {
	return showCmd("status NAME", "A sweep's trials: parameters, step, metric, state, and the best trial",
		"print the sweep as JSON", client.GetSweep, printSweep)
}

// sweepInput is the workflow input with every path absolute, so that any worker, started
// from any folder, finds the data and the checkpoints: the trials' relative paths resolve
// against this folder.
func sweepInput(s *sweep.Sweep) (workflows.SweepInput, error) {
	wd, err := os.Getwd()
	if err != nil {
		return workflows.SweepInput{}, fmt.Errorf("resolving relative paths: %w", err)
	}
	s.Source.Dir = wd
	in := workflows.NewSweepInput(s)
	if in.Transfer != nil {
		target, err := s.Target(s.Trials[0].Params)
		if err != nil {
			return in, err
		}
		if err := absolutePaths(&target); err != nil {
			return in, err
		}
		for _, kv := range [][2]string{{"data.train", target.Data.Train}, {"data.eval", target.Data.Eval}, {"train.checkpoint.dir", target.Train.Checkpoint.Dir}} {
			if kv[1] != "" {
				in.Transfer.Sets = append(in.Transfer.Sets, kv[0]+"="+kv[1])
			}
		}
	}
	return in, nil
}

func sweepLine(p workflows.SweepProgress) string {
	n := map[string]int{}
	for _, t := range p.Trials {
		n[t.State]++
	}
	return fmt.Sprintf("%s %s: %d running, %d completed, %d stopped, %d pending, %d steps",
		p.Name, p.State, n[workflows.TrialRunning], n[workflows.TrialCompleted], n[workflows.TrialStopped],
		n[workflows.TrialPending]+n[workflows.TrialPromoted]+n[workflows.TrialRung], p.Compute)
}

// printSweep is the status table: trial, params, step, metric, state; then the best.
func printSweep(w io.Writer, p workflows.SweepProgress) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "trial\tparams\tstep\t%s\tstate\n", p.Metric)
	for _, t := range p.Trials {
		m := "-"
		switch {
		case t.State == workflows.TrialCompleted:
			m = fmt.Sprintf("%.4f", t.Final)
		case len(t.RungLoss) > 0:
			m = fmt.Sprintf("%.4f @%d", t.RungLoss[len(t.RungLoss)-1], p.Rungs[len(t.RungLoss)-1])
		}
		state := t.State
		if t.Error != "" {
			state += ": " + t.Error
		}
		fmt.Fprintf(tw, "%d\t%s\t%d/%d\t%s\t%s\n", t.Index, strings.Join(t.Params, " "), t.Step, t.Steps, m, state)
	}
	tw.Flush()
	fmt.Fprintln(w, sweepLine(p))
	if p.Best >= 0 {
		b := p.Trials[p.Best]
		fmt.Fprintf(w, "best: trial %d (%s) %s %.4f\n", b.Index, strings.Join(b.Params, " "), p.Metric, b.Final)
	}
	if p.Target != nil {
		fmt.Fprintf(w, "transfer target: %s, %s at step %d/%d, loss %.4f\n", p.Target.Name, p.Target.State, p.Target.Step, p.Target.Steps, p.Target.Loss)
	}
	if p.Error != "" {
		fmt.Fprintf(w, "error: %s\n", p.Error)
	}
}

// writeSweepResults writes trials.csv, trials.parquet, metric.png, lr.png and optimal_lr.csv
// (where they apply) to dir.
func writeSweepResults(progress workflows.SweepProgress, dir string) ([]string, error) {
	p := results.Sweep(progress)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results folder: %w", err)
	}
	var files []string
	for _, r := range []struct {
		name  string
		write func(io.Writer) (bool, error)
	}{
		{"trials.csv", func(w io.Writer) (bool, error) { return true, p.WriteCSV(w) }},
		{"trials.parquet", func(w io.Writer) (bool, error) { return true, p.WriteParquet(w) }},
		{"metric.png", p.WritePNG},
		{"lr.png", p.WriteLRCurves},
		{"optimal_lr.csv", p.WriteOptimalLR},
	} {
		path := filepath.Join(dir, r.name)
		f, err := os.Create(path)
		if err != nil {
			return files, fmt.Errorf("results: %w", err)
		}
		wrote, err := r.write(f)
		err = errors.Join(err, f.Close())
		if err != nil {
			return files, fmt.Errorf("%s: %w", path, err)
		}
		if !wrote {
			_ = os.Remove(path)
			continue
		}
		files = append(files, path)
	}
	return files, nil
}
