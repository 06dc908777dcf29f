// Package plotgrid writes gonum/plot panels to PNG files the way herd's reports lay them out:
// the coordinate check, the FP8 parity curves and a sweep's results share one layout, so
// that their figures read alike.
package plotgrid

import (
	"fmt"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Write draws panels, rows of equal length, as a grid of side × side squares with their
// axes aligned, and under them the legends in columns, left to right (a legend outside the
// panels hides no data), as one PNG on w.
func Write(w io.Writer, panels [][]*plot.Plot, side vg.Length, legend ...plot.Legend) error {
	rows, cols := len(panels), len(panels[0])
	strip := vg.Length(0)
	probe := draw.New(vgimg.New(side, side))
	for i := range legend {
		strip = max(strip, legend[i].Rectangle(probe).Size().Y*5/4+8*vg.Millimeter)
	}
	width, height := side*vg.Length(cols), side*vg.Length(rows)
	img := vgimg.New(width, height+strip)
	dc := draw.New(img)
	top := draw.Crop(dc, 0, 0, strip, 0)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2}
	canvases := plot.Align(panels, tiles, top)
	for r := range panels {
		for i, pl := range panels[r] {
			pl.Draw(canvases[r][i])
		}
	}
	for i := range legend {
		c := draw.Canvas{Canvas: dc, Rectangle: vg.Rectangle{
			Min: vg.Point{X: width * vg.Length(i) / vg.Length(len(legend)), Y: 0},
			Max: vg.Point{X: width * vg.Length(i+1) / vg.Length(len(legend)), Y: strip - 2*vg.Millimeter},
		}}
		legend[i].Top, legend[i].Left = true, true
		legend[i].XOffs = 10 * vg.Millimeter
		legend[i].Draw(c)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("writing the PNG: %w", err)
	}
	return nil
}
