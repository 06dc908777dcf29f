package results

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"image/png"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/herdml/herd/workflows"
)

// The results of a finished sweep: one CSV row per trial with its values, rung metrics
// and final metric, the same table in Parquet; the LR curves drawn as a PNG only for a
// sweep over the learning rate.
func TestSweepResults(t *testing.T) {
	p := Sweep{Name: "s", Metric: "loss", Rungs: []int64{10}, Trials: []workflows.TrialState{
		{Index: 0, Params: []string{"model.d_model=128", "train.optim.lr=0.01"}, State: workflows.TrialCompleted, Step: 30, RungLoss: []float64{3.5}, Final: 3.25},
		{Index: 1, Params: []string{"model.d_model=64", "train.optim.lr=0.02"}, State: workflows.TrialStopped, Step: 10, RungLoss: []float64{4}},
		{Index: 2, Params: []string{"model.d_model=64", "train.optim.lr=0.04"}, State: workflows.TrialCompleted, Step: 30, RungLoss: []float64{3}, Final: 2.5},
	}}
	var b bytes.Buffer
	if err := p.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"trial", "model.d_model", "train.optim.lr", "state", "step", "loss@10", "loss"},
		{"0", "128", "0.01", "completed", "30", "3.5", "3.25"},
		{"1", "64", "0.02", "stopped", "10", "4", ""},
		{"2", "64", "0.04", "completed", "30", "3", "2.5"},
	}
	for i := range want {
		if i >= len(rows) || len(rows[i]) != len(want[i]) {
			t.Fatalf("rows %q, want %q", rows, want)
		}
		for j := range want[i] {
			if rows[i][j] != want[i][j] {
				t.Fatalf("row %d: %q, want %q", i, rows[i], want[i])
			}
		}
	}
	checkParquet(t, p)
	for name, write := range map[string]func(*bytes.Buffer) (bool, error){
		"metric": func(b *bytes.Buffer) (bool, error) { return p.WritePNG(b) },
		"lr":     func(b *bytes.Buffer) (bool, error) { return p.WriteLRCurves(b) },
	} {
		b.Reset()
		ok, err := write(&b)
		if err != nil || !ok {
			t.Fatalf("%s: wrote %v, %v", name, ok, err)
		}
		if _, err := png.Decode(&b); err != nil {
			t.Fatalf("%s: not a PNG: %v", name, err)
		}
	}
	p.Trials = p.Trials[:1]
	p.Trials[0].Params = []string{"model.d_model=128"}
	if ok, err := p.WriteLRCurves(&b); ok || err != nil {
		t.Fatalf("LR curves without an LR key: %v, %v", ok, err)
	}
}

// checkParquet writes p's results as Parquet and reads them back with arrow-go's reader:
// the columns typed, the metrics of trials that have none null.
func checkParquet(t *testing.T, p Sweep) {
	t.Helper()
	var b bytes.Buffer
	if err := p.WriteParquet(&b); err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	tbl, err := pqarrow.ReadTable(context.Background(), bytes.NewReader(b.Bytes()), parquet.NewReaderProperties(mem), pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	var got []string
	for i := range int(tbl.NumCols()) {
		c := tbl.Column(i)
		if len(c.Data().Chunks()) != 1 {
			t.Fatalf("column %s: %d chunks", c.Name(), len(c.Data().Chunks()))
		}
		got = append(got, fmt.Sprintf("%s %s %v", c.Name(), c.DataType(), c.Data().Chunk(0)))
	}
	want := []string{
		"trial int64 [0 1 2]",
		"model.d_model float64 [128 64 64]",
		"train.optim.lr float64 [0.01 0.02 0.04]",
		`state utf8 ["completed" "stopped" "completed"]`,
		"step int64 [30 10 30]",
		"loss@10 float64 [3.5 4 3]",
		"loss float64 [3.25 (null) 2.5]",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Parquet columns\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
