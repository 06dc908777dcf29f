package cpu

import (
	"fmt"
	"math"
	"testing"

	"github.com/herdml/herd/kernels"
)

// quantizeTilesHost is the Backend's QuantizeTiles on host slices (nil: not written).
func quantizeTilesHost(codes []uint8, vals, src, inv []float32, rows, cols, tr, tc int, f kernels.FP8, mul float32) float32 {
	return fp8be.QuantizeTiles(kernels.TileQuant{Codes: kernels.HostBuf(codes), Vals: kernels.HostBuf(vals),
		Src: kernels.HostBuf(src), Inv: kernels.HostBuf(inv), Rows: rows, Cols: cols, TR: tr, TC: tc, Mul: mul, Format: f})
}

// dequantizeTilesHost is the Backend's DequantizeTiles on host slices.
func dequantizeTilesHost(dst []float32, codes []uint8, inv []float32, rows, cols, tr, tc int, f kernels.FP8, mul float32) {
	fp8be.DequantizeTiles(kernels.TileDequant{Dst: kernels.HostBuf(dst), Codes: kernels.HostBuf(codes),
		Inv: kernels.HostBuf(inv), Rows: rows, Cols: cols, TR: tr, TC: tc, Mul: mul, Format: f})
}

// refTiles quantizes x [rows, cols] tile by tile with the plainest loops: per tile its
// amax, FP8Scale's scale (1 for a zero or non-finite tile), Encode of x·scale, and
// Decode·(1/scale)·mul.
func refTiles(x []float32, rows, cols, tr, tc int, f kernels.FP8, mul float32) (codes []uint8, vals, inv []float32) {
	codes, vals = make([]uint8, len(x)), make([]float32, len(x))
	ntc := tileCount(cols, tc)
	inv = make([]float32, tileCount(rows, tr)*ntc)
	for bi := range tileCount(rows, tr) {
		for bj := range ntc {
			var a float32
			isNaN := false
			for r := bi * tr; r < min((bi+1)*tr, rows); r++ {
				for c := bj * tc; c < min((bj+1)*tc, cols); c++ {
					v := x[r*cols+c]
					isNaN = isNaN || v != v
					a = max(a, float32(math.Abs(float64(v))))
				}
			}
			if isNaN {
				a = float32(math.NaN())
			}
			scale := kernels.FP8Scale(a, 1, f, 0, false)
			inv[bi*ntc+bj] = 1 / scale
			for r := bi * tr; r < min((bi+1)*tr, rows); r++ {
				for c := bj * tc; c < min((bj+1)*tc, cols); c++ {
					i := r*cols + c
					codes[i] = f.Encode(x[i]*scale, kernels.SatFinite)
					vals[i] = f.Decode(codes[i]) * (1 / scale * mul)
				}
			}
		}
	}
	return codes, vals, inv
}

// Every tiling gives, tile for tile, the codes and values of the plain reference, on a
// tensor with an outlier tile (3e38), an all-zero tile, tiles holding ±Inf or NaN and
// ragged edges; every tile scale is finite and positive, and the amax is the tensor's.
func TestTileQuantizeMatchesReference(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		rows, cols := 2*fp8Tile+5, fp8Tile+37
		x := randTensor(rows*cols, 11, 1)
		for c := range fp8Tile { // row 3's first tile all zero
			x[3*cols+c] = 0
		}
		x[10*cols+4] = 3e38
		x[200*cols+150] = float32(math.Inf(-1))
		x[131*cols+2] = float32(math.NaN())
		for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
			for _, sh := range [][2]int{{1, fp8Tile}, {fp8Tile, 1}, {fp8Tile, fp8Tile}} {
				name := fmt.Sprintf("%v %dx%d", f, sh[0], sh[1])
				wantC, wantV, wantInv := refTiles(x, rows, cols, sh[0], sh[1], f, 0.75)
				codes, vals := make([]uint8, len(x)), make([]float32, len(x))
				inv := make([]float32, len(wantInv))
				amax := quantizeTilesHost(codes, vals, x, inv, rows, cols, sh[0], sh[1], f, 0.75)
				if !math.IsNaN(float64(amax)) {
					t.Errorf("%s: amax %g, want NaN", name, amax)
				}
				for i := range x {
					if codes[i] != wantC[i] || math.Float32bits(vals[i]) != math.Float32bits(wantV[i]) {
						t.Fatalf("%s: element %d (%g): code %#02x value %g, want %#02x %g", name, i, x[i], codes[i], vals[i], wantC[i], wantV[i])
					}
				}
				for i, v := range inv {
					if v != wantInv[i] || !(v > 0 && v <= math.MaxFloat32) {
						t.Fatalf("%s: tile %d: 1/scale %g, want %g, finite and positive", name, i, v, wantInv[i])
					}
				}
				if sh == [2]int{1, fp8Tile} {
					if got := inv[3*2]; got != 1 {
						t.Errorf("%s: all-zero tile: 1/scale %g, want 1", name, got)
					}
					if got, want := inv[10*2], 3e38/f.Max(); got != want {
						t.Errorf("%s: outlier tile: 1/scale %g, want %g", name, got, want)
					}
				}
				dec := make([]float32, len(x))
				dequantizeTilesHost(dec, codes, inv, rows, cols, sh[0], sh[1], f, 0.75)
				for i := range dec {
					if math.Float32bits(dec[i]) != math.Float32bits(vals[i]) {
						t.Fatalf("%s: DequantizeTiles[%d] = %g, QuantizeTiles wrote %g", name, i, dec[i], vals[i])
					}
				}
			}
		}
	})
}

// specialTiles is rows × cols values whose 1×fp8Tile tiles are, in turn: normal values of
// a magnitude of their own (2^-30 .. 2^30), all zeros (one of them -0), an outlier of 3e38
// and one of MaxFloat32 among normals, a NaN, +Inf and -Inf, only subnormals (448/amax
// overflows to +Inf before the clamp), and values near 1e-37 (a scale clamped to 2^126).
func specialTiles(rows, cols int) []float32 {
	x := randTensor(rows*cols, 17, 1)
	nt := tileCount(cols, fp8Tile)
	for r := range rows {
		for j := range nt {
			tile := x[r*cols+j*fp8Tile : r*cols+min((j+1)*fp8Tile, cols)]
			switch (r*nt + j) % 7 {
			case 0:
				for i := range tile {
					tile[i] *= float32(math.Exp2(float64((r*5+j*3)%61 - 30)))
				}
			case 1:
				clear(tile)
				tile[len(tile)/2] = float32(math.Copysign(0, -1))
			case 2:
				tile[0], tile[len(tile)-1] = 3e38, -math.MaxFloat32
			case 3:
				tile[len(tile)/3] = float32(math.NaN())
			case 4:
				tile[0], tile[len(tile)-1] = float32(math.Inf(1)), float32(math.Inf(-1))
			case 5:
				for i := range tile {
					tile[i] *= 1e-44
				}
			case 6:
				for i := range tile {
					tile[i] *= 1e-37
				}
			}
		}
	}
	return x
}

// The 1×128 tilings give the codes, inverse scales and values of the plain reference
// (refTiles), bit for bit, with every loop: the AVX-512 row loops of kernels/fp8's
// activation codec (E4M3 codes and inverse scales, no values: whole tiles of many rows in
// one call when the width is a multiple of 128, else a row's whole tiles per call and the
// Go loops for its last, narrower tile; the blockwise recipe's tiles with values keep the
// per-tile loops) and the per-tile ones, on specialTiles' zero, outlier, NaN, Inf and
// subnormal tiles, in both formats; and decoding the codes (DequantizeTiles, with a
// scale-back) gives the reference's values.
func TestTileLoopsMatchReference(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, cols := range []int{128, 256, 300, 677, 1024} {
			rows := 9
			x := specialTiles(rows, cols)
			for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
				for _, mul := range []float32{1, 0.75} {
					wantC, wantV, wantInv := refTiles(x, rows, cols, 1, fp8Tile, f, mul)
					for _, withVals := range []bool{false, true} {
						name := fmt.Sprintf("%v ×%g values %v, cols %d", f, mul, withVals, cols)
						codes, vals := make([]uint8, len(x)), []float32(nil)
						if withVals {
							vals = make([]float32, len(x))
						}
						inv := make([]float32, len(wantInv))
						quantizeTilesHost(codes, vals, x, inv, rows, cols, 1, fp8Tile, f, mul)
						for i := range x {
							if codes[i] != wantC[i] || vals != nil && math.Float32bits(vals[i]) != math.Float32bits(wantV[i]) {
								t.Fatalf("%s: element %d (%g): code %#02x, want %#02x, %g", name, i, x[i], codes[i], wantC[i], wantV[i])
							}
						}
						for i := range inv {
							if math.Float32bits(inv[i]) != math.Float32bits(wantInv[i]) {
								t.Fatalf("%s: tile %d: 1/scale %g, want %g", name, i, inv[i], wantInv[i])
							}
						}
						dec := make([]float32, len(x))
						dequantizeTilesHost(dec, codes, inv, rows, cols, 1, fp8Tile, f, mul)
						for i := range dec {
							if math.Float32bits(dec[i]) != math.Float32bits(wantV[i]) {
								t.Fatalf("%s: DequantizeTiles[%d] = %g, want %g", name, i, dec[i], wantV[i])
							}
						}
					}
				}
			}
		}
	})
}

// QuantizeTiles refuses tilings its loops do not cover: tiles wider than fp8Tile, and
// one-column tiles without values (those loops write the values).
func TestQuantizeTilesBadTiling(t *testing.T) {
	src := make([]float32, 4*300)
	for _, c := range []struct {
		tr, tc int
		vals   []float32
	}{{1, 300, nil}, {4, 1, nil}, {0, fp8Tile, nil}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%d×%d tiles, values %v: no panic", c.tr, c.tc, c.vals != nil)
				}
			}()
			quantizeTilesHost(make([]uint8, len(src)), c.vals, src, nil, 4, 300, c.tr, c.tc, kernels.E4M3, 1)
		}()
	}
}

// BenchmarkTile: kernels/fp8's activation codec on the SwiGLU input of a `small` dense
// layer at micro-batch 8 (2048 × 768): E4M3 codes and scales in 1×128 tiles. GB/s counts
// the float32 values and codes read and written.
func BenchmarkTile(b *testing.B) {
	const rows, cols = 2048, 768
	src := randTensor(rows*cols, 1, 1)
	codes, inv := make([]uint8, rows*cols), make([]float32, rows*tileCount(cols, fp8Tile))
	dst := make([]float32, rows*cols)
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			quantizeTilesHost(codes, nil, src, inv, rows, cols, 1, fp8Tile, kernels.E4M3, 1)
		}
		b.ReportMetric(float64(5*rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			dequantizeTilesHost(dst, codes, inv, rows, cols, 1, fp8Tile, kernels.E4M3, 1)
		}
		b.ReportMetric(float64(5*rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
}
