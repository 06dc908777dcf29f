package fp8

import (
	"math"
	"math/rand/v2"
	"testing"
)

// roundTrip encodes src (rows of cols) with TileCodec and decodes it back.
func roundTrip(src []float32, cols int) (dec, scaleInv []float32, codes []uint8) {
	c := NewTileCodec(testBackend)
	codes = make([]uint8, len(src))
	scaleInv = make([]float32, len(src)/cols*c.Scales(cols))
	c.Encode(hc(codes), hb(scaleInv), hb(src), cols)
	dec = make([]float32, len(src))
	c.Decode(hb(dec), hc(codes), hb(scaleInv), cols)
	return dec, scaleInv, codes
}

// Every value comes back within E4M3's rounding error at its tile's own scale: half a step
// of 3 mantissa bits (2^-4 relative) for normals, half the subnormal step 2^-9 (in scaled
// units) below, plus float32's roundings of x·scale and of the decoding. Each tile's scale is
// set from that tile alone: tiles of very different magnitudes do not disturb each other,
// and a row's last, narrower tile (widths not a multiple of 128) is scaled by its own amax.
// (kernels/cpu checks each of its loops against the plain reference, bit for bit.)
func TestTileRoundTrip(t *testing.T) {
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
		ns := NewTileCodec(testBackend).Scales(cols)
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

func TestTileBadShapes(t *testing.T) {
	c := NewTileCodec(testBackend)
	for _, f := range []func(){
		func() { c.Encode(hc(make([]uint8, 10)), hb(make([]float32, 2)), hb(make([]float32, 10)), 3) },         // 10 not rows of 3
		func() { c.Encode(hc(make([]uint8, 9)), hb(make([]float32, 2)), hb(make([]float32, 9)), 3) },           // 3 rows need 3 scales
		func() { c.Decode(hb(make([]float32, 256)), hc(make([]uint8, 255)), hb(make([]float32, 2)), 128) },     // codes too short
		func() { TileCodec{}.Encode(hc(make([]uint8, 3)), hb(make([]float32, 1)), hb(make([]float32, 3)), 3) }, // no backend
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
