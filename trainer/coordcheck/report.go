package coordcheck

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// Violation is a series whose slope left the bounds at some step.
type Violation struct {
	Series Series
	Step   int
	Slope  float64
}

func (v Violation) String() string {
	return fmt.Sprintf("%s vs %s: slope %.3f at step %d", v.Series.Name(), v.Series.Axis, v.Slope, v.Step)
}

// Check returns every (series, step) whose |slope| exceeds maxSlope, from step 1 on. Step 0
// is the init, where μP's logits shrink as 1/√m by design (Tensor Programs V: the output is
// o(1) at init and becomes Θ(1) with the first updates); the check is about training.
// A zero activation, whose slope is undefined, is a violation too.
func (r Result) Check(maxSlope float64) []Violation {
	var out []Violation
	for _, s := range r.Series {
		for t := 1; t < len(s.Slopes); t++ {
			if k := s.Slopes[t]; !(math.Abs(k) <= maxSlope) {
				out = append(out, Violation{s, t, k})
			}
		}
	}
	return out
}

// WriteTable prints one row per series: its slope at init, after the first update and after
// the last, and the largest |slope| over the training steps.
func (r Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "activation\taxis\tsizes\tslope t=0\tt=1\tt=%d\tmax |slope| t>=1\n", r.Steps)
	for _, s := range r.Series {
		worst := 0.0
		for _, k := range s.Slopes[1:] {
			if math.IsNaN(k) || math.Abs(k) > worst {
				worst = math.Abs(k)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%+.3f\t%+.3f\t%+.3f\t%.3f\n", s.Name(), s.Axis, s.Sizes, s.Slopes[0], s.Slopes[1], s.Slopes[r.Steps], worst)
	}
	return tw.Flush()
}
