package fp8

import (
	"errors"
	"math"
	"runtime"
	"testing"

	"github.com/herdml/herd/kernels"
)

// relErr is the mean over the rows of got [·, cols] of each row's relative error against
// exact (‖got_r − exact_r‖ / ‖exact_r‖): the typical row's, which the few rows an outlier
// dominates do not swamp as they would a norm over the whole matrix.
func relErr(got []float32, exact []float64, cols int) float64 {
	var sum float64
	for r := range len(exact) / cols {
		var d, n float64
		for i := r * cols; i < (r+1)*cols; i++ {
			d += (float64(got[i]) - exact[i]) * (float64(got[i]) - exact[i])
			n += exact[i] * exact[i]
		}
		sum += math.Sqrt(d / n)
	}
	return sum / float64(len(exact)/cols)
}

// On inputs with outliers (a few activations of 40–200, a few gradients 1000 times the
// rest, as in a trained transformer) the blockwise recipe's y, dx and dw are closer to the
// exact float64 products than per-tensor current scaling's: an outlier coarsens only its
// own tile. Its y is also the float64 product of its decoded operands to float32
// accumulation, so the tiles' scales are folded back correctly.
func TestBlockwiseBeatsPerTensorWithOutliers(t *testing.T) {
	n, in, out := 3*TileSize+9, 2*TileSize+11, TileSize+40
	x, w, dy := randTensor(n*in, 21, 1), randTensor(out*in, 22, 0.05), randTensor(n*out, 23, 1e-4)
	for i, v := range []float32{4e3, -2e4, 9e3, 1.5e4} {
		x[(i*97+5)*in+i*31] = v
	}
	for i := range 4 {
		dy[(i*89+3)*out+i*17] = 10
	}
	w[7] = 2 // one large weight
	const s = 0.7
	xs, ws, dys := f64(x), f64(w), f64(dy)
	yExact, _ := bound64(xs, ws, 0, 0, 0, 0, s, n, in, out, func(k, j int) int { return j*in + k })
	dxExact, _ := bound64(dys, ws, 0, 0, 0, 0, s, n, out, in, func(k, j int) int { return k*in + j })
	dwExact, _ := bound64(transpose(dys, n, out), xs, 0, 0, 0, 0, s, out, n, in, func(k, j int) int { return k*in + j })

	errs := map[string][3]float64{}
	for _, cfg := range []Config{{Recipe: Current, History: 1}, {Recipe: Current, History: 1, GradE4M3: true}, {Recipe: Blockwise, History: 1}, {Recipe: Blockwise, History: 1, GradE4M3: true}} {
		sc := newScaling(t, cfg)
		l := sc.Linear("w")
		y, dx, dw := make([]float32, n*out), make([]float32, n*in), make([]float32, out*in)
		l.Forward(hb(y), hb(x), hb(w), s, n, in, out)
		l.Backward(hb(dx), hb(dw), hb(dy), s, false)
		if err := sc.Check(); err != nil {
			t.Fatal(err)
		}
		name := cfg.Recipe
		if cfg.GradE4M3 {
			name += " E4M3 gradients"
		}
		errs[name] = [3]float64{relErr(y, yExact, out), relErr(dx, dxExact, in), relErr(dw, dwExact, in)}
		t.Logf("%s: relative error y %.3g, dx %.3g, dw %.3g", name, errs[name][0], errs[name][1], errs[name][2])

		if cfg.Recipe == Blockwise && !cfg.GradE4M3 {
			xd, wd := make([]float32, n*in), make([]float32, out*in)
			testBackend.DequantizeTiles(kernels.TileDequant{Dst: hb(xd), Codes: l.x.codes, Inv: l.x.tileInv,
				Rows: n, Cols: in, TR: 1, TC: TileSize, Mul: 1, Format: E4M3})
			l.decodeWeight(hb(wd), 1)
			dec, bound := bound64(f64(xd), f64(wd), 0, 0, 0, 0, s, n, in, out, func(k, j int) int { return j*in + k })
			within(t, "blockwise y vs decoded operands", y, 0, dec, bound)
		}
	}
	per := errs[Current]
	for _, name := range []string{Blockwise, Blockwise + " E4M3 gradients"} {
		for i, what := range []string{"y", "dx", "dw"} {
			if !(errs[name][i] < per[i]) {
				t.Errorf("%s: %s error %.3g not below per-tensor current scaling's %.3g", name, what, errs[name][i], per[i])
			}
		}
	}
	if e4, e5 := errs[Blockwise+" E4M3 gradients"], errs[Blockwise]; !(e4[1] < e5[1] && e4[2] < e5[2]) {
		t.Errorf("E4M3 gradients: dx, dw errors %.3g, %.3g not below E5M2's %.3g, %.3g", e4[1], e4[2], e5[1], e5[2])
	}
}

// The blockwise Linear: bit-identical on 1 and 4 threads and across Linears sharing an
// input; Inf in the weight or NaN in the gradient is caught by Check, never hidden by a
// tile scale; all-zero inputs give zero outputs.
func TestBlockwiseLinear(t *testing.T) {
	n, in, out := 2*TileSize+3, TileSize+20, 70
	x, w, w2, dy := randTensor(n*in, 31, 1), randTensor(out*in, 32, 0.05), randTensor(out*in, 33, 0.05), randTensor(n*out, 34, 1e-3)
	run := func(x, w, dy []float32) (res []float32, s *Scaling) {
		s = newScaling(t, Config{Recipe: Blockwise, History: 1})
		l := s.Linear("a")
		l2 := s.LinearSharingInput("b", l)
		y, y2 := make([]float32, n*out), make([]float32, n*out)
		dx, dw, dw2 := make([]float32, n*in), make([]float32, out*in), make([]float32, out*in)
		for range 2 {
			l.Forward(hb(y), hb(x), hb(w), 0.5, n, in, out)
			l2.Forward(hb(y2), hb(x), hb(w2), 0.5, n, in, out)
			l2.Backward(hb(dx), hb(dw2), hb(dy), 0.5, false)
			l.Backward(hb(dx), hb(dw), hb(dy), 0.5, true)
			if err := s.Check(); err != nil {
				return nil, s
			}
			if err := s.Update(); err != nil {
				t.Fatal(err)
			}
		}
		return append(append(append(append(y, y2...), dx...), dw...), dw2...), s
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	one, _ := run(x, w, dy)
	runtime.GOMAXPROCS(4)
	four, _ := run(x, w, dy)
	for i := range one {
		if math.Float32bits(one[i]) != math.Float32bits(four[i]) {
			t.Fatalf("element %d: %g with 1 thread, %g with 4", i, one[i], four[i])
		}
	}
	// The sharing Linear computes what a Linear of its own computes.
	solo := newScaling(t, Config{Recipe: Blockwise, History: 1}).Linear("b")
	y2 := make([]float32, n*out)
	solo.Forward(hb(y2), hb(x), hb(w2), 0.5, n, in, out)
	for i, v := range y2 {
		if math.Float32bits(v) != math.Float32bits(one[n*out+i]) {
			t.Fatalf("shared input: y[%d] = %g, alone %g", i, one[n*out+i], v)
		}
	}

	zero, _ := run(make([]float32, n*in), w, dy)
	for i, v := range zero[:2*n*out] {
		if v != 0 {
			t.Fatalf("all-zero input: y[%d] = %g", i, v)
		}
	}
	wInf := append([]float32(nil), w...)
	wInf[3] = float32(math.Inf(1))
	dyNaN := append([]float32(nil), dy...)
	dyNaN[5] = float32(math.NaN())
	for what, c := range map[string][2][]float32{"Inf weight": {wInf, dy}, "NaN gradient": {w, dyNaN}} {
		res, s := run(x, c[0], c[1])
		if err := s.Check(); res != nil || !errors.Is(err, ErrNonFinite) {
			t.Errorf("%s: Check = %v, want ErrNonFinite", what, err)
		}
	}
}
