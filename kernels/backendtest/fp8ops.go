package backendtest

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// FP8: amax, per-tensor and tiled quantization. All exact: the formats, the rounding and
// the scale rule are fully specified.

// fp8Formats are the formats every FP8 op is checked in.
var fp8Formats = []kernels.FP8{kernels.E4M3, kernels.E5M2}

// tileSize is the edge of the FP8 tiles the recipes use.
const tileSize = kernels.FP8Tile

// fp8Input returns n float32 values for quantization: mostly in [-1, 1), with (where n
// allows) values that saturate at the given scale, values in the subnormal range and
// below it, ±0, ±Inf and a NaN.
func fp8Input[F kernels.Float](e *env[F], n int, scale float32, f kernels.FP8) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(2*e.rng.Float64() - 1)
	}
	maxv, tiny := float32(fp8Max(f)), float32(fp8Value(f, 1)) // 1: the smallest subnormal
	special := []float32{
		3 * maxv / scale, -2 * maxv / scale, float32(math.Inf(1)), float32(math.Inf(-1)),
		1.5 * tiny / scale, 0.5 * tiny / scale, -0.25 * tiny / scale, float32(math.Copysign(0, -1)),
		float32(math.NaN()),
	}
	for i, v := range special {
		if at := 3 + 5*i; at < n {
			x[at] = v
		}
	}
	return x
}

// fp8Ties returns, for scale 1, the midpoints between every two neighbouring finite
// values of f, both signs, which round to the even code.
func fp8Ties(f kernels.FP8) []float32 {
	var x []float32
	for c := range int(fp8MaxCode(f)) {
		m := float32((fp8Value(f, uint8(c)) + fp8Value(f, uint8(c+1))) / 2)
		x = append(x, m, -m)
	}
	return x
}

// sameCodes compares codes with the reference's, any NaN code standing for a NaN.
func sameCodes[F kernels.Float](e *env[F], name string, f kernels.FP8, got, want []uint8, src []float32) {
	e.r.Helper()
	g := append([]uint8(nil), got...)
	for i, x := range src {
		if x != x && isNaNCode(f, g[i]) {
			g[i] = want[i]
		}
	}
	same(e, name, g, want)
}

// sameScalar compares an amax with its reference: the same value, or NaN for NaN.
func sameScalar[F kernels.Float](e *env[F], name string, got, want float32) {
	e.r.Helper()
	same(e, name, []float32{got}, []float32{want})
}

func checkAmax[F kernels.Float](e *env[F]) {
	for _, n := range []int{0, 1, 17, 1000, 100003} {
		for _, special := range []string{"", "NaN", "Inf"} {
			e.begin("N=%d %s", n, special)
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(4*e.rng.Float64() - 2)
			}
			if n > 1 {
				x[n/2] = -3 // the largest magnitude is negative
				switch special {
				case "NaN":
					x[n-1] = float32(math.NaN())
				case "Inf":
					x[1] = float32(math.Inf(-1))
				}
			}
			sameScalar(e, "amax", e.be.Amax(in(e, "x", x)), amaxOf(x))
			e.done()
		}
	}
}

func checkQuantize[F kernels.Float](e *env[F]) {
	for _, f := range fp8Formats {
		for _, n := range []int{0, 1, 17, 1000, 5000} {
			for _, scale := range []float32{1, float32(fp8Max(f)) / 0.7} {
				for _, keep := range []string{"codes", "vals", "both"} {
					e.begin("%s N=%d scale=%v keeps %s", fp8Name(f), n, scale, keep)
					quantizeCase(e, f, fp8Input(e, n, scale, f), scale, keep)
				}
			}
		}
		e.begin("%s ties", fp8Name(f))
		quantizeCase(e, f, fp8Ties(f), 1, "both")
	}
}

// quantizeCase checks Quantize of src keeping codes, vals or both (the other empty).
func quantizeCase[F kernels.Float](e *env[F], f kernels.FP8, src []float32, scale float32, keep string) {
	e.r.Helper()
	n := len(src)
	var cb kernels.Buf[uint8]
	var vb kernels.Buf[float32]
	if keep != "vals" {
		cb = out(e, "codes", unwritten[uint8](n))
	}
	if keep != "codes" {
		vb = out(e, "vals", unwritten[float32](n))
	}
	amax := e.be.Quantize(cb, vb, in(e, "src", src), scale, f)
	codes, vals := make([]uint8, n), make([]float32, n)
	for i, x := range src {
		codes[i] = fp8Encode(f, x*scale) // the product rounded to float32
		vals[i] = float32(fp8Value(f, codes[i]))
	}
	sameScalar(e, "amax", amax, amaxOf(src))
	if keep != "vals" {
		sameCodes(e, "codes", f, get(e, cb), codes, src)
	}
	if keep != "codes" {
		same(e, "vals", get(e, vb), vals)
	}
	e.done()
}

func checkDequantize[F kernels.Float](e *env[F]) {
	for _, f := range fp8Formats {
		for _, scaleInv := range []float32{1, 0.0123, 3e-3} {
			for _, n := range []int{0, 1, 17, 1000} {
				e.begin("%s N=%d scaleInv=%v", fp8Name(f), n, scaleInv)
				codes := make([]uint8, n)
				for i := range codes {
					codes[i] = uint8(i) // every code, NaN and Inf ones included
					if i >= 256 {
						codes[i] = uint8(e.rng.IntN(256))
					}
				}
				db := out(e, "dst", unwritten[float32](n))
				e.be.Dequantize(db, in(e, "src", codes), scaleInv, f)
				want := make([]float32, n)
				for i, c := range codes {
					want[i] = float32(fp8Value(f, c)) * scaleInv
				}
				same(e, "dst", get(e, db), want)
				e.done()
			}
		}
	}
}

// tiling is a tile shape of TileQuant and TileDequant.
type tiling struct{ tr, tc int }

var (
	rowTiles    = tiling{1, tileSize}
	columnTiles = tiling{tileSize, 1}
	blockTiles  = tiling{tileSize, tileSize}
)

// tileShapes are (rows, cols): empty, one value, fewer and more than a tile either way,
// whole tiles.
var tileShapes = [][2]int{{0, 5}, {1, 1}, {3, 200}, {130, 37}, {129, 256}}

// tileRef is the reference of TileQuant: the codes, the values times mul/scale, the
// inverse scales and the amax.
type tileRef struct {
	codes []uint8
	vals  []float32
	inv   []float32
	amax  float32
}

// refTiles quantizes src [rows, cols] tile by tile, each tile scaled by the recipes' rule
// of its own amax.
func refTiles(src []float32, rows, cols int, t tiling, f kernels.FP8, mul float32, margin int, pow2 bool) tileRef {
	nr, nc := (rows+t.tr-1)/t.tr, (cols+t.tc-1)/t.tc
	r := tileRef{codes: make([]uint8, len(src)), vals: make([]float32, len(src)), inv: make([]float32, nr*nc), amax: amaxOf(src)}
	for br := range nr {
		for bc := range nc {
			var tile []int
			for i := br * t.tr; i < min((br+1)*t.tr, rows); i++ {
				for j := bc * t.tc; j < min((bc+1)*t.tc, cols); j++ {
					tile = append(tile, i*cols+j)
				}
			}
			vals := make([]float32, len(tile))
			for k, at := range tile {
				vals[k] = src[at]
			}
			scale := kernels.FP8Scale(amaxOf(vals), 1, f, margin, pow2) // the contract's rule
			inv := 1 / scale
			r.inv[br*nc+bc] = inv
			for _, at := range tile {
				r.codes[at] = fp8Encode(f, src[at]*scale)
				r.vals[at] = float32(fp8Value(f, r.codes[at])) * (inv * mul)
			}
		}
	}
	return r
}

// tileVariant is what one TileQuant case keeps: codes, values (in place: over Src),
// inverse scales.
type tileVariant struct {
	codes, vals, inPlace, inv bool
}

func checkQuantizeTiles[F kernels.Float](e *env[F]) {
	variants := []tileVariant{
		{codes: true, inv: true}, {vals: true}, {codes: true, vals: true, inv: true}, {vals: true, inPlace: true},
	}
	for _, f := range fp8Formats {
		for _, t := range []tiling{rowTiles, columnTiles, blockTiles} {
			for _, s := range tileShapes {
				for i, v := range variants {
					if t == columnTiles && !v.vals {
						continue // T×1 tiles are the gradients' operands, always decoded
					}
					margin, pow2, mul := 0, false, float32(1)
					if i == 2 {
						margin, pow2, mul = 1, true, 0.5
					}
					e.begin("%s %dx%d tiles, %dx%d matrix, %+v margin=%d pow2=%v mul=%v",
						fp8Name(f), t.tr, t.tc, s[0], s[1], v, margin, pow2, mul)
					quantizeTilesCase(e, f, t, s[0], s[1], v, mul, margin, pow2)
				}
			}
		}
	}
}

func quantizeTilesCase[F kernels.Float](e *env[F], f kernels.FP8, t tiling, rows, cols int, v tileVariant, mul float32, margin int, pow2 bool) {
	e.r.Helper()
	n, ntiles := rows*cols, ((rows+t.tr-1)/t.tr)*((cols+t.tc-1)/t.tc)
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(6*e.rng.Float64() - 3)
	}
	if ntiles > 1 { // the last tile all zeros (scale 1)
		for i := (rows - 1) / t.tr * t.tr; i < rows; i++ {
			clear(src[i*cols+(cols-1)/t.tc*t.tc : i*cols+cols])
		}
	}
	if n > 300 { // tiles with a NaN and with an Inf: scale 1, NaN and ±max codes
		src[7], src[n/2] = float32(math.NaN()), float32(math.Inf(-1))
	}
	q := kernels.TileQuant{Rows: rows, Cols: cols, TR: t.tr, TC: t.tc, Mul: mul, Format: f, Margin: margin, Pow2: pow2}
	if v.inPlace {
		q.Src = out(e, "src", src)
		q.Vals = q.Src
	} else {
		q.Src = in(e, "src", src)
	}
	if v.codes {
		q.Codes = out(e, "codes", unwritten[uint8](n))
	}
	if v.vals && !v.inPlace {
		q.Vals = out(e, "vals", unwritten[float32](n))
	}
	if v.inv {
		q.Inv = out(e, "inv", unwritten[float32](ntiles))
	}
	amax := e.be.QuantizeTiles(q)
	want := refTiles(src, rows, cols, t, f, mul, margin, pow2)
	sameScalar(e, "amax", amax, want.amax)
	if v.codes {
		sameCodes(e, "codes", f, get(e, q.Codes), want.codes, src)
	}
	if v.vals {
		same(e, "vals", get(e, q.Vals), want.vals)
	}
	if v.inv {
		same(e, "inv", get(e, q.Inv), want.inv)
	}
	e.done()
}

func checkDequantizeTiles[F kernels.Float](e *env[F]) {
	for _, f := range fp8Formats {
		for _, t := range []tiling{rowTiles, blockTiles} {
			for _, s := range tileShapes {
				for _, mul := range []float32{1, 0.5} {
					rows, cols := s[0], s[1]
					e.begin("%s %dx%d tiles, %dx%d matrix, mul=%v", fp8Name(f), t.tr, t.tc, rows, cols, mul)
					nr, nc := (rows+t.tr-1)/t.tr, (cols+t.tc-1)/t.tc
					codes, inv := make([]uint8, rows*cols), make([]float32, nr*nc)
					for i := range codes {
						codes[i] = uint8(e.rng.IntN(256))
					}
					for i := range inv {
						inv[i] = float32(math.Ldexp(1+e.rng.Float64(), e.rng.IntN(20)-14))
					}
					db := out(e, "dst", unwritten[float32](rows*cols))
					e.be.DequantizeTiles(kernels.TileDequant{Dst: db, Codes: in(e, "codes", codes), Inv: in(e, "inv", inv),
						Rows: rows, Cols: cols, TR: t.tr, TC: t.tc, Mul: mul, Format: f})
					want := make([]float32, rows*cols)
					for i := range rows {
						for j := range cols {
							want[i*cols+j] = float32(fp8Value(f, codes[i*cols+j])) * (inv[(i/t.tr)*nc+j/t.tc] * mul)
						}
					}
					same(e, "dst", get(e, db), want)
					e.done()
				}
			}
		}
	}
}
