package results

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/herdml/herd/internal/plotgrid"
	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/sweep"
)

// modeKey is the parametrization's key: when swept, it is a panel of the LR plot rather
// than a curve, because the transfer experiment compares curves within a parametrization.
const modeKey = "metap.mode"

// lrCurve is one line of the LR plot: the completed trials that share every swept value
// but the LR, as (lr, metric) points in LR order (the LR as the trial had it, not
// 2^log2(lr), which need not read back the same).
type lrCurve struct {
	label string
	order []string // the values the label names, to order curves numerically
	pts   []plotter.XY
	best  int // index in pts of the curve's optimum
}

// xys is the curve on the plot's axes: log2 lr, metric.
func (c lrCurve) xys() plotter.XYs {
	xys := make(plotter.XYs, len(c.pts))
	for i, p := range c.pts {
		xys[i] = plotter.XY{X: math.Log2(p.X), Y: p.Y}
	}
	return xys
}

// lrPanel is one panel of the LR plot: one value of each swept key that is neither the
// LR nor the curves' key.
type lrPanel struct {
	label  string
	order  []string
	curves []lrCurve
}

// lrPanels groups the completed trials of an LR sweep into panels and curves. The curves'
// key is the non-LR key with the most values (a tie goes to a key other than metap.mode,
// then to the later key); every other non-LR key splits the panels. Trials whose metric
// is not finite (a diverged run) have no point. Panels and curves are ordered by their
// values, numerically where both are numbers (32 before 128).
func (p Sweep) lrPanels() []lrPanel {
	keys := p.keys()
	if !slices.Contains(keys, LRKey) {
		return nil
	}
	values := map[string][]string{} // key -> its distinct values, in trial order
	for _, t := range p.Trials {
		for _, k := range keys {
			if v, _ := param(t, k); !slices.Contains(values[k], v) {
				values[k] = append(values[k], v)
			}
		}
	}
	curveKey := ""
	for _, k := range keys {
		if k == LRKey {
			continue
		}
		if curveKey == "" || len(values[k]) > len(values[curveKey]) ||
			len(values[k]) == len(values[curveKey]) && (k != modeKey || curveKey == modeKey) {
			curveKey = k
		}
	}
	var panels []lrPanel
	for _, t := range p.Trials {
		s, _ := param(t, LRKey)
		lr, err := strconv.ParseFloat(s, 64)
		if t.State != workflows.TrialCompleted || err != nil || lr <= 0 || math.IsNaN(t.Final) || math.IsInf(t.Final, 0) {
			continue
		}
		var pl, po, co []string // panel label parts and order, curve order
		var cl string
		for _, k := range keys {
			v, _ := param(t, k)
			switch k {
			case LRKey:
			case curveKey:
				cl, co = brief(k, v, values[k])
			default:
				l, o := brief(k, v, values[k])
				pl, po = append(pl, l), append(po, o...)
			}
		}
		label := strings.Join(pl, ", ")
		i := slices.IndexFunc(panels, func(x lrPanel) bool { return x.label == label })
		if i < 0 {
			i = len(panels)
			panels = append(panels, lrPanel{label: label, order: po})
		}
		j := slices.IndexFunc(panels[i].curves, func(c lrCurve) bool { return c.label == cl })
		if j < 0 {
			j = len(panels[i].curves)
			panels[i].curves = append(panels[i].curves, lrCurve{label: cl, order: co})
		}
		c := &panels[i].curves[j]
		c.pts = append(c.pts, plotter.XY{X: lr, Y: t.Final})
	}
	for i := range panels {
		for j := range panels[i].curves {
			c := &panels[i].curves[j]
			slices.SortStableFunc(c.pts, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
			for k, xy := range c.pts {
				if p.Minimize && xy.Y < c.pts[c.best].Y || !p.Minimize && xy.Y > c.pts[c.best].Y {
					c.best = k
				}
			}
		}
		slices.SortStableFunc(panels[i].curves, func(a, b lrCurve) int { return compareValues(a.order, b.order) })
	}
	slices.SortStableFunc(panels, func(a, b lrPanel) int { return compareValues(a.order, b.order) })
	return panels
}

// brief labels one value of a swept key: "n_layers 4" for a scalar (the key's last
// part); for a flow mapping, the fewest of the keys that differ across the sweep's
// values, in the mapping's order, that tell those values apart ("d_model 64" where
// heads and FFN width grow with it), not the whole mapping. It also returns the values
// it names, to order by.
func brief(key, value string, all []string) (string, []string) {
	f, ok := sweep.Fields(value)
	if !ok {
		return key[strings.LastIndex(key, ".")+1:] + " " + value, []string{value}
	}
	fields := make([][][2]string, len(all))
	for i, v := range all {
		if fields[i], ok = sweep.Fields(v); !ok {
			return key + " " + value, []string{value}
		}
	}
	get := func(fs [][2]string, k string) string {
		for _, kv := range fs {
			if kv[0] == k {
				return kv[1]
			}
		}
		return ""
	}
	var varying []string
	for _, kv := range f {
		for _, fs := range fields {
			if get(fs, kv[0]) != kv[1] {
				varying = append(varying, kv[0])
				break
			}
		}
	}
	n := len(varying)
	for m := 1; m < len(varying); m++ {
		seen := map[string]bool{}
		for _, fs := range fields {
			var id []string
			for _, k := range varying[:m] {
				id = append(id, get(fs, k))
			}
			seen[strings.Join(id, "\x00")] = true
		}
		if len(seen) == len(all) {
			n = m
			break
		}
	}
	var parts, order []string
	for _, k := range varying[:n] {
		parts, order = append(parts, k+" "+get(f, k)), append(order, get(f, k))
	}
	return strings.Join(parts, ", "), order
}

// compareValues orders two lists of values element by element, numerically where both
// are numbers, else as text.
func compareValues(a, b []string) int {
	for i := range min(len(a), len(b)) {
		x, ex := strconv.ParseFloat(a[i], 64)
		y, ey := strconv.ParseFloat(b[i], 64)
		switch {
		case ex == nil && ey == nil && x != y:
			return cmp.Compare(x, y)
		case (ex != nil || ey != nil) && a[i] != b[i]:
			return strings.Compare(a[i], b[i])
		}
	}
	return cmp.Compare(len(a), len(b))
}

// WriteLRCurves draws, for a sweep over train.optim.lr, the final metric against log2 of
// the learning rate (lrPanels): one panel per value of the keys that are not the
// curves', one curve per value of the curves' key, each curve's optimum ringed, and one
// legend under the panels (the curves are the same in every panel). It returns false
// when the LR is not swept or no trial completed.
func (p Sweep) WriteLRCurves(w io.Writer) (bool, error) {
	panels := p.lrPanels()
	if len(panels) == 0 {
		return false, nil
	}
	var labels []string // every curve's label, in order, for one color each across panels
	for _, pn := range panels {
		for _, c := range pn.curves {
			if !slices.Contains(labels, c.label) {
				labels = append(labels, c.label)
			}
		}
	}
	type entry struct {
		label  string
		thumbs []plot.Thumbnailer
	}
	entries := make([]entry, len(labels))
	lo, hi, cut := yRange(panels, p.Minimize)
	var plots []*plot.Plot
	for _, pn := range panels {
		pl := plot.New()
		pl.Title.Text = p.Name
		if pn.label != "" {
			pl.Title.Text += ": " + pn.label
		}
		pl.X.Label.Text, pl.Y.Label.Text = "log2 "+LRKey, p.Metric
		if cut {
			pl.Y.Label.Text += " (axis cut: worse points off it)"
		}
		pl.X.Tick.Marker = plot.TickerFunc(integerTicks)
		for _, c := range pn.curves {
			i := slices.Index(labels, c.label)
			xys := c.xys()
			ln, pts, err := plotter.NewLinePoints(xys)
			if err != nil {
				return false, err
			}
			ln.Color, pts.Color, pts.Shape = plotutil.Color(i), plotutil.Color(i), plotutil.Shape(i)
			ln.Width = vg.Points(1.5)
			best, err := plotter.NewScatter(plotter.XYs{xys[c.best]})
			if err != nil {
				return false, err
			}
			best.Color, best.Shape, best.Radius = plotutil.Color(i), draw.RingGlyph{}, vg.Points(7)
			pl.Add(ln, pts, best)
			entries[i] = entry{c.label, []plot.Thumbnailer{ln, pts}}
		}
		plots = append(plots, pl)
	}
	ring := &plotter.Scatter{GlyphStyle: draw.GlyphStyle{Color: color.Black, Shape: draw.RingGlyph{}, Radius: vg.Points(7)}}
	entries = append(entries, entry{"optimum of the curve", []plot.Thumbnailer{ring}})
	// The legend in columns of at most 4 entries, under the panels.
	var legend []plot.Legend
	for i, e := range entries {
		if i%4 == 0 {
			legend = append(legend, plot.NewLegend())
		}
		legend[len(legend)-1].Add(e.label, e.thumbs...)
	}
	for _, pl := range plots {
		pl.Y.Min, pl.Y.Max = lo, hi
	}
	const cols = 2
	var grid [][]*plot.Plot
	for i := 0; i < len(plots); i += cols {
		row := make([]*plot.Plot, min(cols, len(plots))) // nil tiles keep the rows equal
		copy(row, plots[i:])
		grid = append(grid, row)
	}
	return true, plotgrid.Write(w, grid, panelSide, legend...)
}

// integerTicks marks every whole log2 value in [lo, hi]: the octaves of the LR grid.
func integerTicks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for k := math.Ceil(lo); k <= hi; k++ {
		ticks = append(ticks, plot.Tick{Value: k, Label: strconv.Itoa(int(k))})
	}
	return ticks
}

// OptimalLR is one curve's optimum in an LR sweep: the LR with the best final metric
// among the curve's completed trials, and the octave shift of its panel (the largest
// log2 optimal LR minus the smallest over the panel's curves), the transfer
// experiment's result in one number per parametrization.
type OptimalLR struct {
	Panel  string  `json:"panel"` // "" when no key splits the panels
	Curve  string  `json:"curve"` // "" when only the LR is swept
	LR     float64 `json:"lr"`
	Log2LR float64 `json:"log2_lr"`
	Metric float64 `json:"metric"`
	Shift  float64 `json:"octave_shift"`
}

// OptimalLRs lists each curve's optimum, panel by panel in the LR plot's order; nil
// when the LR is not swept.
func (p Sweep) OptimalLRs() []OptimalLR {
	var out []OptimalLR
	for _, pn := range p.lrPanels() {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, c := range pn.curves {
			x := math.Log2(c.pts[c.best].X)
			lo, hi = min(lo, x), max(hi, x)
		}
		for _, c := range pn.curves {
			b := c.pts[c.best]
			out = append(out, OptimalLR{Panel: pn.label, Curve: c.label, LR: b.X, Log2LR: math.Log2(b.X), Metric: b.Y, Shift: hi - lo})
		}
	}
	return out
}

// WriteOptimalLR writes OptimalLRs as CSV (panel, curve, lr, log2_lr, the metric,
// octave_shift); it returns false when the LR is not swept or no trial completed.
func (p Sweep) WriteOptimalLR(w io.Writer) (bool, error) {
	rows := p.OptimalLRs()
	if len(rows) == 0 {
		return false, nil
	}
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"panel", "curve", "lr", "log2_lr", p.Metric, "octave_shift"}); err != nil {
		return false, err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	for _, r := range rows {
		if err := cw.Write([]string{r.Panel, r.Curve, f(r.LR), f(r.Log2LR), f(r.Metric), f(r.Shift)}); err != nil {
			return false, err
		}
	}
	cw.Flush()
	return true, cw.Error()
}

// PrintOptimalLR prints OptimalLRs as a table, then each panel's octave shift; nothing
// when the LR is not swept.
func (p Sweep) PrintOptimalLR(w io.Writer) {
	rows := p.OptimalLRs()
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "panel\tcurve\toptimal lr\tlog2\t%s\n", p.Metric)
	var shifts []string
	for i, r := range rows {
		panel := cmp.Or(r.Panel, "all")
		fmt.Fprintf(tw, "%s\t%s\t%g\t%g\t%.4f\n", panel, cmp.Or(r.Curve, "-"), r.LR, r.Log2LR, r.Metric)
		if i+1 == len(rows) || rows[i+1].Panel != r.Panel {
			shifts = append(shifts, fmt.Sprintf("%s: the optimal lr moves %g octaves across the curves", panel, r.Shift))
		}
	}
	tw.Flush()
	for _, s := range shifts {
		fmt.Fprintln(w, s)
	}
}

// yRange is the metric axis shared by every panel, so that panels compare at a glance:
// from the lowest point to the highest, but cut on the bad side at three times the distance
// from the best point to the median, so that a few diverged trials at the largest LRs do
// not squash the curves' optima into a line. cut says whether it cut anything.
func yRange(panels []lrPanel, minimize bool) (lo, hi float64, cut bool) {
	var ys []float64
	for _, pn := range panels {
		for _, c := range pn.curves {
			for _, xy := range c.pts {
				ys = append(ys, xy.Y)
			}
		}
	}
	slices.Sort(ys)
	lo, hi, med := ys[0], ys[len(ys)-1], ys[len(ys)/2]
	if minimize {
		return lo, min(hi, lo+3*(med-lo)), hi > lo+3*(med-lo)
	}
	return max(lo, hi-3*(hi-med)), hi, lo < hi-3*(hi-med)
}
