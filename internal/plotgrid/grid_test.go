package plotgrid

import (
	"bytes"
	"image/png"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Two rows of three panels make an image three sides wide and two sides high, with a
// legend strip below them when there is a legend.
func TestWriteGridSize(t *testing.T) {
	const side = 2 * vg.Inch
	grid := make([][]*plot.Plot, 2)
	var legend plot.Legend
	for r := range grid {
		for range 3 {
			p := plot.New()
			l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
			if err != nil {
				t.Fatal(err)
			}
			p.Add(l)
			grid[r] = append(grid[r], p)
			if r == 0 && len(grid[r]) == 1 {
				legend = plot.NewLegend()
				legend.Add("line", l)
			}
		}
	}
	for _, c := range []struct {
		legend []plot.Legend
		taller bool
	}{{nil, false}, {[]plot.Legend{legend}, true}} {
		var buf bytes.Buffer
		if err := Write(&buf, grid, side, c.legend...); err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		dpi := vg.Length(96) // vgimg's default
		w, h := img.Bounds().Dx(), img.Bounds().Dy()
		wantW, wantH := int(3*side/vg.Inch*dpi+0.5), int(2*side/vg.Inch*dpi+0.5)
		if w != wantW || (h == wantH) == c.taller || h < wantH {
			t.Errorf("legend %v: %dx%d pixels, want %d wide and %d high (more with a legend)", c.taller, w, h, wantW, wantH)
		}
	}
}
