package fp8

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// roundTrip encodes src (rows of cols) with TileCodec and decodes it back.
func roundTrip(src []float32, cols int) (dec, scaleInv []float32, codes []uint8) {
	var c TileCodec
	codes = make([]uint8, len(src))
	scaleInv = make([]float32, len(src)/cols*c.Scales(cols))
	c.Encode(codes, scaleInv, src, cols)
	dec = make([]float32, len(src))
	c.Decode(dec, codes, scaleInv, cols)
	return dec, scaleInv, codes
}

// Every value comes back within E4M3's rounding error at its tile's own scale: half a step
// of 3 mantissa bits (2^-4 relative) for normals, half the subnormal step 2^-9 (in scaled
// units) below, plus float32's roundings of x·scale and of the decoding. Each tile's scale is
// set from that tile alone: tiles of very different magnitudes do not disturb each other,
// and a row's last, narrower tile (widths not a multiple of 128) is scaled by its own amax.
func TestTileRoundTrip(t *testing.T) {
	forEachImpl(t, testTileRoundTrip)
}

func testTileRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, cols := range []int{1, 5, 127, 128, 129, 200, 256, 300, 768} {
		rows := 37
		src := make([]float32, rows*cols)
		for i := range src {
			// each row and tile its own magnitude, 2^-30 .. 2^30
			mag := math.Exp2(float64((i/cols*7+i%cols/TileSize*13)%61 - 30))
			src[i] = float32(mag * rng.NormFloat64())
		}
		dec, scaleInv, _ := roundTrip(src, cols)
		ns := TileCodec{}.Scales(cols)
		for r := range rows {
			for j := range ns {
				a, b := r*cols+j*TileSize, r*cols+min((j+1)*TileSize, cols)
				amax := float32(0)
				for _, x := range src[a:b] {
					amax = max(amax, float32(math.Abs(float64(x))))
				}
				want := amax / 448
				if s := scaleInv[r*ns+j]; math.Abs(float64(s-want)) > 1e-6*float64(want) {
					t.Fatalf("cols %d row %d tile %d: scaleInv %g, want amax/448 = %g", cols, r, j, s, want)
				}
				for i := a; i < b; i++ {
					x, d := float64(src[i]), float64(dec[i])
					bound := 0x1p-4*math.Abs(x)*(1+0x1p-20) + 0x1p-10*float64(want)*(1+0x1p-20)
					if math.Abs(d-x) > bound || math.Signbit(d) != math.Signbit(x) {
						t.Fatalf("cols %d: value %d = %g decodes to %g, error %g > bound %g", cols, i, x, d, math.Abs(d-x), bound)
					}
				}
			}
		}
	}
	// The largest value of a tile is encoded as ±448: the full E4M3 range is used.
	if _, _, codes := roundTrip([]float32{-3, 1, 2.5}, 3); codes[0] != 0xFE {
		t.Fatalf("amax element encodes to %#x, want 0xFE (-448)", codes[0])
	}
}

// An all-zero tile gets scale 1 (no 448/0), keeps its zeros' signs and disturbs nothing
// beside it; a tile with an outlier of 3e38 gets a finite scale, the outlier comes back
// within 2^-4, and the neighbouring tile of the same row keeps its own precision.
func TestTileZeroAndOutlier(t *testing.T) {
	const cols = 300 // tiles of 128, 128 and 44
	src := randTensor(2*cols, 3, 1)
	clear(src[:128])
	src[5] = float32(math.Copysign(0, -1))
	src[cols+130] = 3e38
	src[cols+131] = math.MaxFloat32
	dec, scaleInv, _ := roundTrip(src, cols)
	for i, s := range scaleInv {
		if math.IsInf(float64(s), 0) || math.IsNaN(float64(s)) || s <= 0 {
			t.Fatalf("scaleInv[%d] = %g", i, s)
		}
	}
	if scaleInv[0] != 1 {
		t.Errorf("all-zero tile: scaleInv %g, want 1", scaleInv[0])
	}
	for i := range 128 {
		if dec[i] != 0 || math.Signbit(float64(dec[i])) != (i == 5) {
			t.Fatalf("all-zero tile: value %d decodes to %g", i, dec[i])
		}
	}
	for _, i := range []int{cols + 130, cols + 131} {
		if d, x := float64(dec[i]), float64(src[i]); math.IsInf(d, 0) || math.Abs(d-x) > 0x1p-4*x {
			t.Errorf("outlier %g decodes to %g", x, d)
		}
	}
	// The outlier's neighbours flush to zero (their tile's step is ~1e36), the next tile
	// of the row does not notice it.
	for i := cols + 256; i < 2*cols; i++ {
		if x, d := float64(src[i]), float64(dec[i]); math.Abs(d-x) > 0x1p-4*math.Abs(x)+1e-2 {
			t.Fatalf("value %d = %g beside an outlier tile decodes to %g", i, x, d)
		}
	}
}

// NaN stays NaN; ±Inf saturate to ±448 at scale 1 (the tile's amax is not finite); a
// tile of subnormal values gets the largest scale, 2^126, not +Inf (448/1e-44 overflows
// float32), and decodes to values within 1e-44 of its own.
func TestTileNonFinite(t *testing.T) {
	src := []float32{float32(math.NaN()), 1, float32(math.Inf(1)), float32(math.Inf(-1)), 1e-44, 2e-45, 0, -1e-44}
	dec, scaleInv, _ := roundTrip(src, 4)
	if !math.IsNaN(float64(dec[0])) || dec[1] != 1 || dec[2] != 448 || dec[3] != -448 || scaleInv[0] != 1 {
		t.Errorf("NaN, 1, +Inf, -Inf decode to %v with scaleInv %g", dec[:4], scaleInv[0])
	}
	if scaleInv[1] != 0x1p-126 {
		t.Errorf("subnormal tile: scaleInv %g, want 2^-126", scaleInv[1])
	}
	for i := 4; i < 8; i++ {
		if math.Abs(float64(dec[i]-src[i])) > 1e-44 {
			t.Errorf("subnormal %g decodes to %g", src[i], dec[i])
		}
	}
}

// specialTiles is rows × cols values whose 1×TileSize tiles are, in turn: normal values of
// a magnitude of their own (2^-30 .. 2^30), all zeros (one of them -0), an outlier of 3e38
// and one of MaxFloat32 among normals, a NaN, +Inf and -Inf, only subnormals (448/amax
// overflows to +Inf before the clamp), and values near 1e-37 (a scale clamped to 2^126).
func specialTiles(rows, cols int) []float32 {
	x := randTensor(rows*cols, 17, 1)
	nt := tiles(cols, TileSize)
	for r := range rows {
		for j := range nt {
			tile := x[r*cols+j*TileSize : r*cols+min((j+1)*TileSize, cols)]
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

// TileCodec and the 1×128 tilings give the codes, inverse scales and values of the plain
// reference (refTiles), bit for bit, with every loop: the AVX-512 row loops (whole tiles of
// many rows in one call when the width is a multiple of 128, else a row's whole tiles per
// call and the Go loops for its last, narrower tile; the blockwise recipe's tiles with
// values keep the per-tile loops) and the per-tile ones, on specialTiles' zero, outlier,
// NaN, Inf and subnormal tiles, in both formats; and decoding the codes (TileCodec.Decode,
// decodeTiles with a scale-back) gives the reference's values.
func TestTileLoopsMatchReference(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, cols := range []int{128, 256, 300, 677, 1024} {
			rows := 9
			x := specialTiles(rows, cols)
			var c TileCodec
			wantC, wantV, wantInv := refTiles(x, rows, cols, 1, TileSize, E4M3, 1)
			dec, inv, codes := roundTrip(x, cols)
			for i := range x {
				if codes[i] != wantC[i] || math.Float32bits(dec[i]) != math.Float32bits(wantV[i]) {
					t.Fatalf("TileCodec, cols %d: element %d (%g): code %#02x, decoded %g; want %#02x, %g", cols, i, x[i], codes[i], dec[i], wantC[i], wantV[i])
				}
			}
			for i := range rows * c.Scales(cols) {
				if math.Float32bits(inv[i]) != math.Float32bits(wantInv[i]) {
					t.Fatalf("TileCodec, cols %d: tile %d: 1/scale %g, want %g", cols, i, inv[i], wantInv[i])
				}
			}
			for _, f := range []Format{E4M3, E5M2} {
				wantC, wantV, wantInv := refTiles(x, rows, cols, 1, TileSize, f, 0.75)
				for _, withVals := range []bool{false, true} {
					name := fmt.Sprintf("%v values %v, cols %d", f, withVals, cols)
					codes, vals := make([]uint8, len(x)), []float32(nil)
					if withVals {
						vals = make([]float32, len(x))
					}
					inv := make([]float32, len(wantInv))
					quantizeTiles(tileQuant{p: &formats[f], codes: codes, vals: vals, src: x, inv: inv,
						rows: rows, cols: cols, tr: 1, tc: TileSize, mul: 0.75})
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
					decodeTiles(tileDecode{tab: &formats[f].decode, dst: dec, codes: codes, inv: inv,
						rows: rows, cols: cols, tr: 1, tc: TileSize, mul: 0.75})
					for i := range dec {
						if math.Float32bits(dec[i]) != math.Float32bits(wantV[i]) {
							t.Fatalf("%s: decodeTiles[%d] = %g, want %g", name, i, dec[i], wantV[i])
						}
					}
				}
			}
		}
	})
}

func TestTileBadShapes(t *testing.T) {
	var c TileCodec
	for _, f := range []func(){
		func() { c.Encode(make([]uint8, 10), make([]float32, 2), make([]float32, 10), 3) },     // 10 not rows of 3
		func() { c.Encode(make([]uint8, 9), make([]float32, 2), make([]float32, 9), 3) },       // 3 rows need 3 scales
		func() { c.Decode(make([]float32, 256), make([]uint8, 255), make([]float32, 2), 128) }, // codes too short
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
}

// BenchmarkTile: the SwiGLU input of a `small` dense layer at micro-batch 8 (2048 × 768).
// GB/s counts the float32 values and codes read and written.
func BenchmarkTile(b *testing.B) {
	const rows, cols = 2048, 768
	var c TileCodec
	src := randTensor(rows*cols, 1, 1)
	codes, scaleInv := make([]uint8, rows*cols), make([]float32, rows*c.Scales(cols))
	dst := make([]float32, rows*cols)
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			c.Encode(codes, scaleInv, src, cols)
		}
		b.ReportMetric(float64(5*rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			c.Decode(dst, codes, scaleInv, cols)
		}
		b.ReportMetric(float64(5*rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
}
