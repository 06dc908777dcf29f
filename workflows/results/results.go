// Package results writes what a finished sweep found, for people and for other tools: the
// trials table as CSV and Parquet, and plots (the metric against each swept parameter,
// loss against learning rate). It reads the sweep workflow's SweepProgress and runs
// outside the workflow: nothing here needs to be deterministic.
package results

import (
	"encoding/csv"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/herdml/herd/internal/plotgrid"
	"github.com/herdml/herd/workflows"
)

// Sweep is a sweep's progress, as the sweep workflow reports it, with the methods that
// write its results: results.Sweep(p).WriteCSV(w).
type Sweep workflows.SweepProgress

// LRKey is the config key whose sweeps get loss-against-learning-rate curves.
const LRKey = "train.optim.lr"

// param returns the value of key in a trial's "key=value" list.
func param(t workflows.TrialState, key string) (string, bool) {
	for _, kv := range t.Params {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v, true
		}
	}
	return "", false
}

// keys lists the swept keys, in the sweep file's order.
func (p Sweep) keys() []string {
	if len(p.Trials) == 0 {
		return nil
	}
	var out []string
	for _, kv := range p.Trials[0].Params {
		k, _, _ := strings.Cut(kv, "=")
		out = append(out, k)
	}
	return out
}

// column is one column of the results table: its name, its Parquet type, and its cells
// as the CSV writes them ("" = no value).
type column struct {
	name  string
	typ   arrow.DataType
	cells []string
}

// columns is the results table, one row per trial: its index, every swept value (a
// number column where every value is a number), state, committed step, the metric at
// each rung, and the final metric (empty unless completed).
func (p Sweep) columns() []column {
	col := func(name string, typ arrow.DataType, cell func(workflows.TrialState) string) column {
		c := column{name: name, typ: typ}
		for _, t := range p.Trials {
			c.cells = append(c.cells, cell(t))
		}
		return c
	}
	metric := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	cols := []column{col("trial", arrow.PrimitiveTypes.Int64, func(t workflows.TrialState) string { return strconv.Itoa(t.Index) })}
	for _, k := range p.keys() {
		c := col(k, arrow.PrimitiveTypes.Float64, func(t workflows.TrialState) string { v, _ := param(t, k); return v })
		for _, v := range c.cells {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				c.typ = arrow.BinaryTypes.String
				break
			}
		}
		cols = append(cols, c)
	}
	cols = append(cols,
		col("state", arrow.BinaryTypes.String, func(t workflows.TrialState) string { return t.State }),
		col("step", arrow.PrimitiveTypes.Int64, func(t workflows.TrialState) string { return strconv.FormatInt(t.Step, 10) }))
	for i, r := range p.Rungs {
		cols = append(cols, col(fmt.Sprintf("%s@%d", p.Metric, r), arrow.PrimitiveTypes.Float64, func(t workflows.TrialState) string {
			if i < len(t.RungLoss) {
				return metric(t.RungLoss[i])
			}
			return ""
		}))
	}
	return append(cols, col(p.Metric, arrow.PrimitiveTypes.Float64, func(t workflows.TrialState) string {
		if t.State == workflows.TrialCompleted {
			return metric(t.Final)
		}
		return ""
	}))
}

// WriteCSV writes the results table (columns) with a header row.
func (p Sweep) WriteCSV(w io.Writer) error {
	cols := p.columns()
	cw := csv.NewWriter(w)
	row := make([]string, len(cols))
	for j, c := range cols {
		row[j] = c.name
	}
	if err := cw.Write(row); err != nil {
		return err
	}
	for i := range p.Trials {
		for j, c := range cols {
			row[j] = c.cells[i]
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteParquet writes the results table (columns) as one Parquet row group, typed:
// integers, float64 metrics (null where the CSV is empty) and strings, so that pandas,
// Polars or DuckDB read the sweep without parsing text.
func (p Sweep) WriteParquet(w io.Writer) error {
	cols := p.columns()
	fields := make([]arrow.Field, len(cols))
	for j, c := range cols {
		fields[j] = arrow.Field{Name: c.name, Type: c.typ, Nullable: c.typ == arrow.PrimitiveTypes.Float64}
	}
	schema := arrow.NewSchema(fields, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	for j, c := range cols {
		for _, v := range c.cells {
			switch b := rb.Field(j).(type) {
			case *array.Int64Builder:
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return fmt.Errorf("column %s: %w", c.name, err)
				}
				b.Append(n)
			case *array.Float64Builder:
				if v == "" {
					b.AppendNull()
					continue
				}
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return fmt.Errorf("column %s: %w", c.name, err)
				}
				b.Append(f)
			case *array.StringBuilder:
				b.Append(v)
			}
		}
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	// The writer closes a sink that is an io.Closer; the caller owns w and closes it.
	fw, err := pqarrow.NewFileWriter(schema, struct{ io.Writer }{w}, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps())
	if err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	if err := fw.Write(rec); err != nil {
		return errors.Join(fmt.Errorf("parquet: %w", err), fw.Close())
	}
	return fw.Close()
}

// WritePNG draws the final metric of each completed trial against each numeric swept key,
// one panel per key (log axis where the values span 8x or more), with the trials ASHA
// stopped at their last rung's metric in grey. Without a numeric key it draws nothing and
// returns false.
func (p Sweep) WritePNG(w io.Writer) (bool, error) {
	var panels []*plot.Plot
	for _, k := range p.keys() {
		var done, stopped plotter.XYs
		for _, t := range p.Trials {
			s, _ := param(t, k)
			x, err := strconv.ParseFloat(s, 64)
			if err != nil {
				done, stopped = nil, nil
				break // a categorical key: nothing to put on an axis
			}
			switch {
			case t.State == workflows.TrialCompleted:
				done = append(done, plotter.XY{X: x, Y: t.Final})
			case len(t.RungLoss) > 0:
				stopped = append(stopped, plotter.XY{X: x, Y: t.RungLoss[len(t.RungLoss)-1]})
			}
		}
		if len(done)+len(stopped) == 0 {
			continue
		}
		pl := plot.New()
		pl.Title.Text = fmt.Sprintf("%s: %s against %s", p.Name, p.Metric, k)
		pl.X.Label.Text, pl.Y.Label.Text = k, p.Metric
		if logAxis(append(slices.Clone(done), stopped...)) {
			pl.X.Scale, pl.X.Tick.Marker = plot.LogScale{}, plot.TickerFunc(octaves)
		}
		for _, set := range []struct {
			xys plotter.XYs
			c   color.Color
		}{{stopped, color.Gray{Y: 160}}, {done, color.RGBA{B: 200, A: 255}}} {
			if len(set.xys) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(set.xys)
			if err != nil {
				return false, err
			}
			sc.Color = set.c
			pl.Add(sc)
		}
		panels = append(panels, pl)
	}
	if len(panels) == 0 {
		return false, nil
	}
	return true, plotgrid.Write(w, [][]*plot.Plot{panels}, panelSide)
}

// logAxis reports whether x values are all positive and span at least 8x.
func logAxis(xys plotter.XYs) bool {
	lo, hi := math.Inf(1), 0.0
	for _, p := range xys {
		if p.X <= 0 {
			return false
		}
		lo, hi = min(lo, p.X), max(hi, p.X)
	}
	return hi >= 8*lo
}

// octaves marks a log axis at the powers of two inside [lo, hi].
// panelSide is the side of each square panel of a sweep's plots.
const panelSide = 5 * vg.Inch

func octaves(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for k := math.Floor(math.Log2(lo)); k <= math.Ceil(math.Log2(hi)); k++ {
		if v := math.Exp2(k); v >= lo && v <= hi {
			ticks = append(ticks, plot.Tick{Value: v, Label: fmt.Sprintf("2^%d", int(k))})
		}
	}
	return ticks
}
