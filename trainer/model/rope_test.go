package model

import (
	"math"
	"testing"
)

// TestRopeFreqsLlama3Scaling checks RopeFreqs on D = 8, rope_theta 10⁴ against values
// worked out by hand from Llama 3.1's rule, with original_max_positions 64, factor 8 and
// low/high frequency factors 1 and 4 (wavelength bounds 64 and 16). The four unscaled
// frequencies 1, 0.1, 0.01, 0.001 have wavelengths 2π, 62.8, 628 and 6283: the first is
// kept, the last two are divided by 8, and 0.1 is interpolated with
// s = (64/62.83 - 1)/3 = 0.006197: 0.1·((1-s)/8 + s) = 0.0130423.
func TestRopeFreqsLlama3Scaling(t *testing.T) {
	cfg := Config{DModel: 16, NHeads: 2, RopeTheta: 10000}
	for _, tc := range []struct {
		name    string
		scaling RopeScaling
		want    []float64
	}{
		{"off", RopeScaling{}, []float64{1, 0.1, 0.01, 0.001}},
		{"llama3", RopeScaling{Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 64},
			[]float64{1, 0.013042256043820463, 0.00125, 0.000125}},
		// Equal factors, as Llama 4 Scout's config has them: one bound (32), nothing interpolated.
		{"equal factors", RopeScaling{Factor: 16, LowFreqFactor: 1, HighFreqFactor: 1, OriginalMaxPositions: 32},
			[]float64{1, 0.1 / 16, 0.01 / 16, 0.001 / 16}},
		// A factor of 1 changes nothing, whatever the bounds.
		{"factor 1", RopeScaling{Factor: 1, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 64},
			[]float64{1, 0.1, 0.01, 0.001}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg.RopeScaling = tc.scaling
			got := RopeFreqs(cfg)
			if len(got) != len(tc.want) {
				t.Fatalf("%d frequencies, want %d", len(got), len(tc.want))
			}
			for j, w := range tc.want {
				if math.Abs(got[j]-w) > 1e-12*w {
					t.Errorf("pair %d: frequency %.17g, want %.17g", j, got[j], w)
				}
			}
		})
	}
}

// TestRopeScalingTurnsTheTables: the model's cos/sin tables use the scaled frequencies.
func TestRopeScalingTurnsTheTables(t *testing.T) {
	cfg := testConfig()
	cfg.RopeScaling = RopeScaling{Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 4}
	m := newTestModel[float32](cfg, 1)
	D := cfg.HeadDim()
	cos, sin := m.cos.Host(), m.sin.Host()
	freqs := RopeFreqs(cfg)
	for p := range cfg.SeqLen {
		for j, f := range freqs {
			ws, wc := math.Sincos(float64(p) * f)
			if c, s := cos[p*D/2+j], sin[p*D/2+j]; c != float32(wc) || s != float32(ws) {
				t.Fatalf("position %d pair %d: cos, sin = %g, %g, want the angle %g·%d", p, j, c, s, f, p)
			}
		}
	}
	if freqs[1] == math.Pow(cfg.RopeTheta, -2.0/float64(D)) {
		t.Fatal("the scaling did not change pair 1's frequency")
	}
}
