package coordcheck

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/herdml/herd/internal/plotgrid"
)

// kinds are the width panels, in the order of the forward pass.
var kinds = []string{"embedding", "attention", "ffn", "residual", "logits"}

// WritePNG draws one panel per activation kind against width (attention, ffn and residual
// averaged over the blocks), plus one for the last residual stream against depth when the
// check has a depth family: log-log axes, one line per step, light (init) to dark (last).
// A flat line is a width-independent activation.
func (r Result) WritePNG(w io.Writer) error {
	var panels []*plot.Plot
	for _, k := range kinds {
		p, err := r.panel("width", k)
		if err != nil {
			return err
		}
		panels = append(panels, p)
	}
	if p, err := r.panel("depth", "residual"); err != nil {
		return err
	} else if p != nil {
		panels = append(panels, p)
	}
	if err := plotgrid.Write(w, [][]*plot.Plot{panels}, 4*vg.Inch); err != nil {
		return fmt.Errorf("coordcheck: %w", err)
	}
	return nil
}

// panel plots the mean over blocks of every series of kind along axis; nil when there is
// none.
func (r Result) panel(axis, kind string) (*plot.Plot, error) {
	var series []Series
	for _, s := range r.Series {
		if s.Axis == axis && s.Kind == kind {
			series = append(series, s)
		}
	}
	if len(series) == 0 {
		return nil, nil
	}
	sizes := series[0].Sizes
	p := plot.New()
	name := kind
	if axis == "depth" {
		name = "last residual"
	}
	p.Title.Text = fmt.Sprintf("%s, %s\nsteps 0 (light) to %d (dark)", name, r.Mode, r.Steps)
	p.X.Label.Text = axis
	p.Y.Label.Text = "mean |activation|"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.Y.Tick.Marker = plot.TickerFunc(octaves)
	var ticks []plot.Tick
	for _, s := range sizes {
		ticks = append(ticks, plot.Tick{Value: float64(s), Label: strconv.Itoa(s)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	for t := range r.Steps + 1 {
		var xys plotter.XYs
		for i, size := range sizes {
			mean := 0.0
			for _, s := range series {
				mean += s.Values[t][i] / float64(len(series))
			}
			if mean > 0 { // a log axis cannot show 0
				xys = append(xys, plotter.XY{X: float64(size), Y: mean})
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("coordcheck: %w", err)
		}
		shade := uint8(200 - 200*t/max(1, r.Steps))
		line.Color = color.RGBA{R: shade, G: shade, B: 255, A: 255}
		line.Width = vg.Points(1.5)
		p.Add(line)
	}
	return p, nil
}

// octaves marks a log axis at the powers of two inside [lo, hi], with the ends labelled
// too when fewer than two powers fall inside: activations often span less than a decade,
// where plot.LogTicks would label nothing.
func octaves(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for k := math.Floor(math.Log2(lo)); k <= math.Ceil(math.Log2(hi)); k++ {
		if v := math.Exp2(k); v >= lo && v <= hi {
			ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 3, 64)})
		}
	}
	if len(ticks) < 2 {
		ticks = append(ticks, plot.Tick{Value: lo, Label: strconv.FormatFloat(lo, 'g', 2, 64)},
			plot.Tick{Value: hi, Label: strconv.FormatFloat(hi, 'g', 2, 64)})
	}
	return ticks
}
