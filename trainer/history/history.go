// Package history is a run's metrics history: one row per optimizer step (loss, LR,
// gradient norm, throughput, expert load, FP8 scaling, and the evaluation when one ran
// after the step), appended as the run trains to history.arrows in the run's checkpoint
// folder, for `herd metrics` and the dashboard.
//
// The file is an Arrow IPC stream (https://arrow.apache.org/docs/format/Columnar.html#ipc-streaming-format):
// a schema, then one record batch per step, so that every step is on disk as soon as it
// is trained and a reader sees it without waiting for the run to end. pyarrow reads it
// with pyarrow.ipc.open_stream(path).read_pandas(). A process killed while appending
// leaves a partial last message; Read ignores it.
//
// The history follows the checkpoints: Open keeps only the rows up to the step the run
// resumes from and rewrites the file with them, so that the steps trained after the last
// committed checkpoint are replaced, not duplicated, and the history of a resumed run
// equals, row for row, that of a run that never stopped (but for the columns that
// measure the machine: Time, StepSeconds, TokensPerS).
package history

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/herdml/herd/internal/storage"
)

// FileName is the history's file in a run's checkpoint folder.
const FileName = "history.arrows"

// Row is one optimizer step. A float that does not apply to the step (no evaluation ran
// after it, no FP8) is NaN in Go and null in the file.
type Row struct {
	Step        int64     // steps completed, this one included
	Tokens      int64     // tokens trained on so far, all ranks, this step included
	Time        time.Time // when the step ended (wall clock; machine-dependent)
	Loss        float64   // mean cross-entropy of the step's micro-batches, nats per token
	Aux         float64   // MoE load-balancing loss (already times moe.aux_loss)
	LR          float64   // base LR of the step (train.optim.lr times the schedule)
	GradNorm    float64   // global gradient norm before clipping
	TokensPerS  float64   // the step's tokens over its wall time (machine-dependent)
	StepSeconds float64   // the step's wall time (machine-dependent)
	EvalLoss    float64   // held-out loss after this step; NaN when none ran
	EvalBPB     float64   // held-out bits per byte after this step; NaN when none ran
	// ExpertLoad is, per MoE layer, each expert's share of the routed slots in the step;
	// nil for a dense model.
	ExpertLoad [][]float64
	// FP8AmaxMax is the largest amax over the FP8 tensors' histories after the step, and
	// FP8ScaleMin and FP8ScaleMax the range of their scales; NaN in fp32.
	FP8AmaxMax, FP8ScaleMin, FP8ScaleMax float64
}

// Schema is the file's Arrow schema; the columns are Row's fields, in snake case.
var Schema = arrow.NewSchema([]arrow.Field{
	{Name: "step", Type: arrow.PrimitiveTypes.Int64},
	{Name: "tokens", Type: arrow.PrimitiveTypes.Int64},
	{Name: "time", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "loss", Type: arrow.PrimitiveTypes.Float64},
	{Name: "aux_loss", Type: arrow.PrimitiveTypes.Float64},
	{Name: "lr", Type: arrow.PrimitiveTypes.Float64},
	{Name: "grad_norm", Type: arrow.PrimitiveTypes.Float64},
	{Name: "tokens_per_s", Type: arrow.PrimitiveTypes.Float64},
	{Name: "step_seconds", Type: arrow.PrimitiveTypes.Float64},
	{Name: "eval_loss", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "eval_bpb", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "expert_load", Type: arrow.ListOf(arrow.ListOf(arrow.PrimitiveTypes.Float64)), Nullable: true},
	{Name: "fp8_amax_max", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "fp8_scale_min", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "fp8_scale_max", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
}, nil)

// Writer appends rows to a history file.
type Writer struct {
	f    *os.File
	w    *ipc.Writer
	rb   *array.RecordBuilder
	last int64 // the step of the last row written
}

// LastStep is the step of the last row in the file: kept by Open or written by Append;
// 0 when there is none.
func (w *Writer) LastStep() int64 { return w.last }

// Open opens dir's history for appending after step: the rows of steps up to step are
// kept, every later one is dropped (they were trained after the checkpoint the run
// resumes from, and will be trained again), and the file is rewritten with what is kept
// (written beside it and renamed over it, so that a kill during Open loses nothing).
// step 0 starts an empty history. dir is a local folder; it must exist.
func Open(dir string, step int64) (*Writer, error) {
	path := filepath.Join(dir, FileName)
	rows, err := Read(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	kept := rows[:0]
	for _, r := range rows {
		if r.Step <= step && (len(kept) == 0 || r.Step > kept[len(kept)-1].Step) {
			kept = append(kept, r)
		}
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	w := &Writer{f: f, w: ipc.NewWriter(f, ipc.WithSchema(Schema)), rb: array.NewRecordBuilder(memory.DefaultAllocator, Schema)}
	// The kept rows go in one record batch: a batch per step costs about 1.3 KB of
	// message header and padding, so rewriting compacts what earlier appends wrote.
	for _, r := range kept {
		w.add(r)
	}
	if len(kept) > 0 {
		if err := w.flush(); err != nil {
			w.abort()
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		w.abort()
		return nil, fmt.Errorf("history: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		w.abort()
		return nil, fmt.Errorf("history: %w", err)
	}
	return w, nil
}

// Append writes one row as its own record batch, so that it is in the file when Append
// returns.
func (w *Writer) Append(r Row) error {
	w.add(r)
	return w.flush()
}

// add puts r in the record batch being built.
func (w *Writer) add(r Row) {
	b := w.rb
	b.Field(0).(*array.Int64Builder).Append(r.Step)
	b.Field(1).(*array.Int64Builder).Append(r.Tokens)
	b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp(r.Time.UnixMilli()))
	for i, v := range []float64{r.Loss, r.Aux, r.LR, r.GradNorm, r.TokensPerS, r.StepSeconds} {
		b.Field(3 + i).(*array.Float64Builder).Append(v)
	}
	appendOptional(b.Field(9).(*array.Float64Builder), r.EvalLoss)
	appendOptional(b.Field(10).(*array.Float64Builder), r.EvalBPB)
	lb := b.Field(11).(*array.ListBuilder)
	if r.ExpertLoad == nil {
		lb.AppendNull()
	} else {
		lb.Append(true)
		inner := lb.ValueBuilder().(*array.ListBuilder)
		for _, layer := range r.ExpertLoad {
			inner.Append(true)
			inner.ValueBuilder().(*array.Float64Builder).AppendValues(layer, nil)
		}
	}
	for i, v := range []float64{r.FP8AmaxMax, r.FP8ScaleMin, r.FP8ScaleMax} {
		appendOptional(b.Field(12+i).(*array.Float64Builder), v)
	}
	w.last = r.Step
}

// flush writes the rows added since the last flush as one record batch.
func (w *Writer) flush() error {
	rec := w.rb.NewRecordBatch()
	defer rec.Release()
	if err := w.w.Write(rec); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// Close ends the stream and closes the file.
func (w *Writer) Close() error {
	err := w.w.Close()
	w.rb.Release()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w *Writer) abort() {
	w.rb.Release()
	w.f.Close()
	os.Remove(w.f.Name())
}

func appendOptional(b *array.Float64Builder, v float64) {
	if math.IsNaN(v) {
		b.AppendNull()
		return
	}
	b.Append(v)
}

// Read returns the rows of the history file at path, in file order. A partial last
// message (a writer killed while appending) ends the rows without an error; a file that
// is not a history is an error naming it. A missing file is an error satisfying
// errors.Is(err, os.ErrNotExist).
func Read(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Decode(f, path)
}

// ReadAt is Read for a path or an object-store URL (s3://bucket/prefix/history.arrows,
// the copy a run whose checkpoints are in a bucket uploads at each checkpoint).
func ReadAt(loc string) ([]Row, error) {
	if !storage.IsURL(loc) {
		return Read(loc)
	}
	b, err := storage.Open(storage.Join(loc, ".."))
	if err != nil {
		return nil, err
	}
	r, err := b.Get(path.Base(loc))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return Decode(r, loc)
}

// Decode reads a history stream from r; name says where it comes from in errors.
func Decode(r io.Reader, name string) ([]Row, error) {
	rd, err := ipc.NewReader(r, ipc.WithSchema(Schema))
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // created, nothing written yet
		}
		return nil, fmt.Errorf("%s: not a herd metrics history: %w", name, err)
	}
	defer rd.Release()
	var rows []Row
	for rd.Next() {
		rows = appendRows(rows, rd.RecordBatch())
	}
	// rd.Err() is a partial last message: the rows before it stand.
	return rows, nil
}

func appendRows(rows []Row, rec arrow.RecordBatch) []Row {
	i64 := func(c int) *array.Int64 { return rec.Column(c).(*array.Int64) }
	f64 := func(c int, i int) float64 {
		a := rec.Column(c).(*array.Float64)
		if a.IsNull(i) {
			return math.NaN()
		}
		return a.Value(i)
	}
	ts := rec.Column(2).(*array.Timestamp)
	loads := rec.Column(11).(*array.List)
	for i := range int(rec.NumRows()) {
		r := Row{
			Step: i64(0).Value(i), Tokens: i64(1).Value(i),
			Time: time.UnixMilli(int64(ts.Value(i))),
			Loss: f64(3, i), Aux: f64(4, i), LR: f64(5, i), GradNorm: f64(6, i),
			TokensPerS: f64(7, i), StepSeconds: f64(8, i),
			EvalLoss: f64(9, i), EvalBPB: f64(10, i),
			FP8AmaxMax: f64(12, i), FP8ScaleMin: f64(13, i), FP8ScaleMax: f64(14, i),
		}
		if loads.IsValid(i) {
			start, end := loads.ValueOffsets(i)
			layers := loads.ListValues().(*array.List)
			vals := layers.ListValues().(*array.Float64)
			for l := start; l < end; l++ {
				s, e := layers.ValueOffsets(int(l))
				r.ExpertLoad = append(r.ExpertLoad, append([]float64(nil), vals.Float64Values()[s:e]...))
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// Diff says how got differs from want in the columns that a run's config, seed and world
// size decide: every column but Time, StepSeconds and TokensPerS, which measure the
// machine. NaN (null) equals NaN. It returns "" when they agree row for row: the promise
// a resumed run's history keeps to an uninterrupted run's (and a run on another number of
// ranks, where the trainer's losses are bit-identical: see trainer/parallel.go).
func Diff(got, want []Row) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d rows, want %d", len(got), len(want))
	}
	same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
	for i, g := range got {
		w := want[i]
		ok := g.Step == w.Step && g.Tokens == w.Tokens && len(g.ExpertLoad) == len(w.ExpertLoad)
		for _, pair := range [][2]float64{{g.Loss, w.Loss}, {g.Aux, w.Aux}, {g.LR, w.LR}, {g.GradNorm, w.GradNorm},
			{g.EvalLoss, w.EvalLoss}, {g.EvalBPB, w.EvalBPB}, {g.FP8AmaxMax, w.FP8AmaxMax}, {g.FP8ScaleMin, w.FP8ScaleMin}, {g.FP8ScaleMax, w.FP8ScaleMax}} {
			ok = ok && same(pair[0], pair[1])
		}
		for l := 0; ok && l < len(g.ExpertLoad); l++ {
			ok = len(g.ExpertLoad[l]) == len(w.ExpertLoad[l])
			for e := 0; ok && e < len(g.ExpertLoad[l]); e++ {
				ok = same(g.ExpertLoad[l][e], w.ExpertLoad[l][e])
			}
		}
		if !ok {
			return fmt.Sprintf("row %d:\n got  %+v\n want %+v", i, g, w)
		}
	}
	return ""
}
