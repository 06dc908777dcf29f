package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/trainer/history"
	"github.com/herdml/herd/workflows/client"
)

func newMetricsCmd() *cobra.Command {
	var (
		tf            temporalFlags
		asCSV, asJSON bool
		out           string
		last          int
	)
	c := &cobra.Command{
		Use:   "metrics RUN",
		Short: "Print a run's metrics history: every step's loss, LR, throughput, expert load, evals",
		Long: "Prints the metrics history a run writes beside its checkpoints (docs/metrics.md): as CSV with\n" +
			"--csv, as JSON Lines with --json, else the last --last steps and every evaluation as a table.\n\n" +
			"RUN is a run's folder or bucket prefix (runs/tiny, s3://bucket/runs/tiny), one of its checkpoints,\n" +
			"or its history file; or a run's name: the run of that name under --out DIR (the checkpoint root,\n" +
			"as for herd train), else under train.checkpoint.dir's default, else the folder Temporal's run of\n" +
			"that name reports (herd status).",
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if asCSV && asJSON {
				return usererr.New("--csv", "give one of --csv and --json, not both")
			}
			if last < 1 {
				return usererr.New("--last", "must be at least 1, got %d", last)
			}
			where, err := historyOf(args[0], out, &tf)
			if err != nil {
				return err
			}
			rows, err := readHistory(where)
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			switch {
			case asCSV:
				return writeHistoryCSV(w, rows)
			case asJSON:
				return writeHistoryJSON(w, rows)
			}
			return writeHistoryTable(w, where, rows, last)
		},
	}
	tf.register(c)
	c.Flags().BoolVar(&asCSV, "csv", false, "print CSV: a header, then one row per step; empty cells for null, expert load as expert_load.LAYER.EXPERT columns")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON Lines: one object per step, null where a value does not apply")
	c.Flags().StringVar(&out, "out", "", "checkpoint root where a run named RUN is found (as herd train --out)")
	c.Flags().IntVar(&last, "last", 10, "without --csv or --json: how many of the last steps the table shows")
	return c
}

// historyOf is where the history of what the user named as RUN is: a path or URL of the
// history file itself, resolved as the command's help says.
func historyOf(run, out string, tf *temporalFlags) (string, error) {
	if out != "" {
		if !config.ValidName(run) {
			return "", usererr.New(run, "with --out, RUN is a run's name (A-Z a-z 0-9 . _ -); without --out it may be a folder")
		}
		return historyIn(storage.Join(out, run)), nil
	}
	if storage.IsURL(run) {
		return historyIn(run), nil
	}
	if _, err := os.Stat(run); err == nil || !config.ValidName(run) {
		return historyIn(run), nil
	}
	if dir := storage.Join(config.Default().Train.Checkpoint.Dir, run); exists(dir) {
		return historyIn(dir), nil
	}
	conn, done, err := tf.connect(nil)
	if err != nil {
		return "", err
	}
	defer done()
	s, err := client.GetStatus(context.Background(), conn.Client, run)
	if err != nil {
		if usererr.Is(err) {
			return "", usererr.New(run, "no run folder here and no run of that name (%v); name the run's folder, or give --out DIR", err)
		}
		return "", err
	}
	if s.Dir == "" {
		return "", usererr.New("run "+run, "no checkpoint yet, and so no metrics history; try again after its first segment")
	}
	return historyIn(s.Dir), nil
}

// historyIn is the history file of a run folder, of a checkpoint's folder (its run's),
// or the path itself when it names the file (a local file of any name).
func historyIn(p string) string {
	base := path.Base(strings.TrimPrefix(p, storage.Scheme))
	if fi, err := os.Stat(p); base == history.FileName || !storage.IsURL(p) && err == nil && !fi.IsDir() {
		return p
	}
	if checkpoint.IsName(base) {
		return storage.Join(p, "..", history.FileName)
	}
	return storage.Join(p, history.FileName)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// readHistory reads the history file at p, a path or URL. A missing or unreadable file
// is a user error naming it.
func readHistory(p string) ([]history.Row, error) {
	rows, err := history.ReadAt(p)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !storage.IsURL(p) && !exists(path.Dir(p)):
		return nil, usererr.New(path.Dir(p), "no such folder: name a run's folder (such as runs/tiny), or give --out DIR with the run's name")
	case errors.Is(err, fs.ErrNotExist):
		return nil, usererr.New(p, "no metrics history: name a run's folder (runs trained by this herd write one beside their checkpoints), or give --out DIR with the run's name")
	case err != nil:
		return nil, usererr.New(p, "unreadable metrics history (%v)", errors.Unwrap(err))
	}
	return rows, nil
}

// historyColumns are the CSV header: the file's columns, with expert_load spread over one
// column per layer and expert (the widest row's shape).
func historyColumns(rows []history.Row) (cols []string, layers, experts int) {
	for _, r := range rows {
		layers = max(layers, len(r.ExpertLoad))
		for _, l := range r.ExpertLoad {
			experts = max(experts, len(l))
		}
	}
	for _, f := range history.Schema.Fields() {
		if f.Name != "expert_load" {
			cols = append(cols, f.Name)
			continue
		}
		for l := range layers {
			for e := range experts {
				cols = append(cols, fmt.Sprintf("expert_load.%d.%d", l, e))
			}
		}
	}
	return cols, layers, experts
}

// number is v as the shortest decimal that reads back to it; "" for NaN (null).
func number(v float64) string {
	if math.IsNaN(v) {
		return ""
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// timeText is a row's time in RFC 3339, UTC, to the millisecond the file keeps.
func timeText(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

func writeHistoryCSV(w io.Writer, rows []history.Row) error {
	cols, layers, experts := historyColumns(rows)
	cw := csv.NewWriter(w)
	if err := cw.Write(cols); err != nil {
		return err
	}
	for _, r := range rows {
		rec := []string{strconv.FormatInt(r.Step, 10), strconv.FormatInt(r.Tokens, 10), timeText(r.Time)}
		for _, v := range []float64{r.Loss, r.Aux, r.LR, r.GradNorm, r.TokensPerS, r.StepSeconds, r.EvalLoss, r.EvalBPB} {
			rec = append(rec, number(v))
		}
		for l := range layers {
			for e := range experts {
				v := math.NaN()
				if l < len(r.ExpertLoad) && e < len(r.ExpertLoad[l]) {
					v = r.ExpertLoad[l][e]
				}
				rec = append(rec, number(v))
			}
		}
		for _, v := range []float64{r.FP8AmaxMax, r.FP8ScaleMin, r.FP8ScaleMax} {
			rec = append(rec, number(v))
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// jsonRow is one line of --json: the file's columns by their names, null where the file
// has null.
type jsonRow struct {
	Step        int64       `json:"step"`
	Tokens      int64       `json:"tokens"`
	Time        string      `json:"time"`
	Loss        *float64    `json:"loss"`
	Aux         *float64    `json:"aux_loss"`
	LR          *float64    `json:"lr"`
	GradNorm    *float64    `json:"grad_norm"`
	TokensPerS  *float64    `json:"tokens_per_s"`
	StepSeconds *float64    `json:"step_seconds"`
	EvalLoss    *float64    `json:"eval_loss"`
	EvalBPB     *float64    `json:"eval_bpb"`
	ExpertLoad  [][]float64 `json:"expert_load"`
	FP8AmaxMax  *float64    `json:"fp8_amax_max"`
	FP8ScaleMin *float64    `json:"fp8_scale_min"`
	FP8ScaleMax *float64    `json:"fp8_scale_max"`
}

// orNull is v, or nil for NaN (null) and the infinities JSON cannot hold.
func orNull(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func writeHistoryJSON(w io.Writer, rows []history.Row) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		if err := enc.Encode(jsonRow{
			Step: r.Step, Tokens: r.Tokens, Time: timeText(r.Time),
			Loss: orNull(r.Loss), Aux: orNull(r.Aux), LR: orNull(r.LR), GradNorm: orNull(r.GradNorm),
			TokensPerS: orNull(r.TokensPerS), StepSeconds: orNull(r.StepSeconds),
			EvalLoss: orNull(r.EvalLoss), EvalBPB: orNull(r.EvalBPB), ExpertLoad: r.ExpertLoad,
			FP8AmaxMax: orNull(r.FP8AmaxMax), FP8ScaleMin: orNull(r.FP8ScaleMin), FP8ScaleMax: orNull(r.FP8ScaleMax),
		}); err != nil {
			return err
		}
	}
	return nil
}

// writeHistoryTable is the default output: the last steps, then every evaluation.
func writeHistoryTable(w io.Writer, where string, rows []history.Row, last int) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintf(w, "%s: no steps yet\n", where)
		return err
	}
	end := rows[len(rows)-1]
	fmt.Fprintf(w, "%s: %d steps, %d tokens\n\n", where, end.Step, end.Tokens)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STEP\tTOKENS\tLOSS\tAUX\tLR\tGRAD NORM\tTOKENS/S\tEVAL LOSS\t")
	for _, r := range rows[max(0, len(rows)-last):] {
		fmt.Fprintf(tw, "%d\t%d\t%.4f\t%.4g\t%.3g\t%.4g\t%.0f\t%s\t\n", r.Step, r.Tokens, r.Loss, r.Aux, r.LR, r.GradNorm, r.TokensPerS, fixed(r.EvalLoss))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var evals []history.Row
	for _, r := range rows {
		if !math.IsNaN(r.EvalLoss) {
			evals = append(evals, r)
		}
	}
	if len(evals) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nevaluations:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STEP\tEVAL LOSS\tBITS/BYTE\t")
	for _, r := range evals {
		fmt.Fprintf(tw, "%d\t%.4f\t%.4f\t\n", r.Step, r.EvalLoss, r.EvalBPB)
	}
	return tw.Flush()
}

// fixed is a loss to four places, or "-" for null.
func fixed(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.4f", v)
}
