package fp8

import (
	"math"
	"testing"
)

// Summary's amax is the largest over the step just ended and the delayed history (so a
// past outlier shows until it leaves the history), and its scales are the current range;
// with current scaling, which keeps no history, the amax is the last step's.
func TestSummary(t *testing.T) {
	s := newScaling(t, Config{Recipe: Delayed, History: 2})
	if a, lo, hi := s.Summary(); !math.IsNaN(a) || !math.IsNaN(lo) || !math.IsNaN(hi) {
		t.Errorf("no tensors: %g %g %g, want NaN", a, lo, hi)
	}
	x, g := s.Scaler("x", E4M3), s.Scaler("g", E5M2)
	codes := make([]uint8, 4)
	for i, amax := range []float32{8, 1, 1} {
		x.Quantize(hc(codes), hb(fill(4, amax)))
		g.Quantize(hc(codes), hb(fill(4, amax/4)))
		if err := s.Update(); err != nil {
			t.Fatal(err)
		}
		want := []float64{8, 8, 1}[i] // history 2: the 8 leaves after two more steps
		a, lo, hi := s.Summary()
		if a != want || lo != float64(min(x.Scale(), g.Scale())) || hi != float64(max(x.Scale(), g.Scale())) {
			t.Errorf("step %d: summary %g [%g, %g]; want amax %g, scales %g and %g", i, a, lo, hi, want, x.Scale(), g.Scale())
		}
	}

	c := newScaling(t, Config{Recipe: Current, History: 1})
	y := c.Scaler("y", E4M3)
	y.Quantize(hc(codes), hb(fill(4, 3)))
	if err := c.Update(); err != nil {
		t.Fatal(err)
	}
	if a, lo, hi := c.Summary(); a != 3 || lo != float64(y.Scale()) || hi != lo {
		t.Errorf("current scaling: summary %g [%g, %g], want 3 [%g, %g]", a, lo, hi, y.Scale(), y.Scale())
	}
}
