package history

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func row(step int64) Row {
	r := Row{
		Step: step, Tokens: 512 * step, Time: time.UnixMilli(1_800_000_000_000 + step*100),
		Loss: 5 - float64(step)/10, Aux: 0.01, LR: 1e-3, GradNorm: 1.5, TokensPerS: 5000, StepSeconds: 0.1,
		EvalLoss: math.NaN(), EvalBPB: math.NaN(),
		FP8AmaxMax: math.NaN(), FP8ScaleMin: math.NaN(), FP8ScaleMax: math.NaN(),
	}
	if step%2 == 0 {
		r.EvalLoss, r.EvalBPB = 4.5, 4.5/math.Ln2
		r.ExpertLoad = [][]float64{{0.5, 0.5}, {0.25, 0.75}}
		r.FP8AmaxMax, r.FP8ScaleMin, r.FP8ScaleMax = 3, 0.5, 448
	}
	return r
}

// rowsOf is the rows of steps from to to, as row makes them.
func rowsOf(from, to int64) []Row {
	var rs []Row
	for s := from; s <= to; s++ {
		rs = append(rs, row(s))
	}
	return rs
}

// appendAll appends rows to w, failing the test on an error.
func appendAll(t *testing.T, w *Writer, rows []Row) {
	t.Helper()
	for _, r := range rows {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
}

func equalRows(t *testing.T, got, want []Row) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		// NaN != NaN: compare through the file's own encoding of absence.
		g, w := got[i], want[i]
		for _, p := range []*float64{&g.EvalLoss, &g.EvalBPB, &g.FP8AmaxMax, &g.FP8ScaleMin, &g.FP8ScaleMax, &w.EvalLoss, &w.EvalBPB, &w.FP8AmaxMax, &w.FP8ScaleMin, &w.FP8ScaleMax} {
			if math.IsNaN(*p) {
				*p = -1
			}
		}
		if !g.Time.Equal(w.Time) || !reflect.DeepEqual(withoutTime(g), withoutTime(w)) {
			t.Fatalf("row %d:\n got  %+v\n want %+v", i, got[i], want[i])
		}
	}
}

func withoutTime(r Row) Row { r.Time = time.Time{}; return r }

// A resumed history keeps the rows up to the checkpoint and replaces the later ones: the
// file then equals the one of a run that never stopped, also after a writer was killed
// in the middle of a row.
func TestResumeReplacesRowsAfterTheCheckpoint(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, w, rowsOf(1, 7))
	// Killed mid-append: no Close, and half a message at the end.
	path := filepath.Join(dir, FileName)
	full, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(full, full[len(full)/2:len(full)/2+40]...), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	equalRows(t, got, rowsOf(1, 7))

	// Resumed from the checkpoint at step 4: steps 5.. are trained again.
	w, err = Open(dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, w, rowsOf(5, 9))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = Read(path)
	if err != nil {
		t.Fatal(err)
	}
	equalRows(t, got, rowsOf(1, 9))
}

func TestReadRefusesAnotherFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, []byte("step,loss\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err == nil {
		t.Fatal("a CSV file read as a history")
	}
	if _, err := Read(filepath.Join(t.TempDir(), FileName)); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v, want not-exist", err)
	}
}

// Open rewrites the kept rows as one record batch: a history reopened at every segment
// does not keep the per-step message overhead of its appends.
func TestOpenCompacts(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, w, rowsOf(1, 50))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	appended, _ := os.Stat(path)
	if w, err = Open(dir, 50); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	compacted, _ := os.Stat(path)
	t.Logf("50 rows: %d bytes appended one by one, %d after Open", appended.Size(), compacted.Size())
	if compacted.Size()*4 > appended.Size() {
		t.Errorf("50 rows: %d bytes appended, %d after Open: not compacted", appended.Size(), compacted.Size())
	}
	got, err := Read(path)
	if err != nil || len(got) != 50 {
		t.Fatalf("after Open: %d rows, %v", len(got), err)
	}
}
