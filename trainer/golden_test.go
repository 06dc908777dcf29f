package trainer

import (
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden_losses.json from this run")

// goldenTolerance is the relative difference allowed per step: far above the float32
// rounding differences between instruction sets (AVX-512, AVX2, pure Go), far below what
// any change to the model, the data order or the optimizer makes.
const goldenTolerance = 1e-4

// TestGoldenLosses compares the first steps' losses of the micro run with those recorded
// in testdata/golden_losses.json, to catch silent numerical changes in the model, kernels,
// data order or optimizer. After an intended change, rerun with -update and say why in the
// commit.
func TestGoldenLosses(t *testing.T) {
	const steps = 8
	var got []float64
	tr := newTrainer(t, microConfig(t), Options{Progress: func(s Stats) { got = append(got, s.Loss) }})
	if _, err := tr.Run(context.Background(), steps); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "golden_losses.json")
	if *update {
		js, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []float64
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != steps {
		t.Fatalf("%s holds %d losses, want %d: rerun with -update", path, len(want), steps)
	}
	var worst float64
	for i := range want {
		worst = math.Max(worst, math.Abs(got[i]-want[i])/want[i])
		if math.Abs(got[i]-want[i]) > goldenTolerance*want[i] {
			t.Errorf("step %d: loss %.7f, golden %.7f (relative difference %.1e > %.0e)", i+1, got[i], want[i], math.Abs(got[i]-want[i])/want[i], goldenTolerance)
		}
	}
	t.Logf("largest relative difference from the golden losses: %.1e", worst)
}
