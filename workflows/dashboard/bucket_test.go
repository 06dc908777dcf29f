package dashboard

import (
	"math"
	"testing"
	"time"

	"github.com/herdml/herd/internal/s3test"
	"github.com/herdml/herd/trainer/history"
)

// A run whose checkpoints are in a bucket has its history there (uploaded at each
// checkpoint): the dashboard reads and follows it as a local one, and a run that has
// not committed a checkpoint yet has none, without an error.
func TestHistoryInABucket(t *testing.T) {
	s3test.Start(t)
	dir := t.TempDir()
	w, err := history.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for s := int64(1); s <= 3; s++ {
		r := history.Row{Step: s, Tokens: 512 * s, Time: time.UnixMilli(1_800_000_000_000 + s), Loss: 5 - float64(s),
			EvalLoss: math.NaN(), EvalBPB: math.NaN(), FP8AmaxMax: math.NaN(), FP8ScaleMin: math.NaN(), FP8ScaleMax: math.NaN()}
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s3test.Upload(t, dir, "runs/bucketed")

	rows, err := readHistory(s3test.URL("runs/bucketed"))
	if err != nil || len(rows) != 3 || rows[2].Loss != 2 {
		t.Fatalf("readHistory of the bucket's run: %d rows, %v; want 3 rows, the last of loss 2", len(rows), err)
	}
	feed := historyFeed{name: "bucketed"}
	b, ok, err := feed.next(s3test.URL("runs/bucketed"))
	if err != nil || !ok || b.Rows != 3 {
		t.Fatalf("the feed's first read: %d rows, ok %v, %v; want 3 rows", b.Rows, ok, err)
	}
	if _, ok, err := feed.next(s3test.URL("runs/bucketed")); ok || err != nil {
		t.Errorf("read again at once: ok %v, %v; want nothing new", ok, err)
	}
	if rows, err := readHistory(s3test.URL("runs/none-yet")); rows != nil || err != nil {
		t.Errorf("a bucket run without a history: %d rows, %v; want none and no error", len(rows), err)
	}
	if _, ok, err := (&historyFeed{}).next(s3test.URL("runs/none-yet")); ok || err != nil {
		t.Errorf("following a bucket run without a history: ok %v, %v; want nothing and no error", ok, err)
	}
}
