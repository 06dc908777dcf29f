package model

import (
	"math"
	"slices"
	"testing"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
)

// decodeTol bounds |Step's logit - Forward's| relative to the largest |logit| of the row.
// Both run the same float32 operations on the same values; only the GEMMs' summation
// order may differ (one row against a whole prefix). Measured on kernels/cpu: 0, the
// logits are bit-identical; 1e-5 leaves room for a backend whose GEMM blocks by rows.
const decodeTol = 1e-5

// TestDecoderMatchesForward: greedy decoding with the KV cache gives exactly the tokens, and
// logits within decodeTol, of recomputing the whole prefix with Forward at every step, on
// the tiny preset (MoE every 2nd layer with a shared expert, NoPE on the 4th layer,
// grouped-query attention) with random weights large enough that the tokens vary.
func TestDecoderMatchesForward(t *testing.T) {
	cfg := Presets["tiny"]
	cfg.SeqLen = 48
	be := device.CPU[float32]()
	m := New[float32](cfg, be, 1)
	m.Init(3, func(t Tensor) float64 {
		return 0.5 / math.Sqrt(float64(t.Shape[len(t.Shape)-1]))
	})
	V := cfg.VocabSize
	seq := []int32{'f', 'u', 'n', 'c', ' '}
	dec := m.NewDecoder()
	distinct := map[int32]bool{}
	worst := 0.0
	for p := 0; len(seq) <= cfg.SeqLen; p++ {
		var got []float32
		for dec.Len() < len(seq) { // the prompt, then each generated token
			got = dec.Step(seq[dec.Len()])
		}
		got = slices.Clone(got)

		var b data.Batch
		b.Resize(1, len(seq))
		for i := range seq {
			b.Tokens[i], b.Pos[i] = seq[i], int32(i)
		}
		m.Forward(&b)
		want := kernels.ToHost(be, m.Logits())[(len(seq)-1)*V:]

		scale := 0.0
		for _, w := range want {
			scale = max(scale, math.Abs(float64(w)))
		}
		for j := range V {
			worst = max(worst, math.Abs(float64(got[j]-want[j]))/scale)
		}
		next, wantNext := Argmax(got), Argmax(want)
		if next != wantNext {
			t.Fatalf("position %d: decoder picks %d, Forward %d", len(seq), next, wantNext)
		}
		distinct[next] = true
		if len(seq) == cfg.SeqLen {
			break
		}
		seq = append(seq, next)
	}
	t.Logf("largest relative logit difference over %d positions: %.2g", cfg.SeqLen, worst)
	if worst > decodeTol {
		t.Errorf("decoder logits differ from Forward's by %.2g of the row's largest, above %g", worst, decodeTol)
	}
	if len(distinct) < 3 {
		t.Errorf("only %d distinct tokens generated: the test would not notice a wrong position", len(distinct))
	}
	dec.Reset()
	again := dec.Step(seq[0])
	if dec.Len() != 1 || again[0] != firstLogit(t, m, be, seq[0]) {
		t.Errorf("after Reset the decoder does not start a new sequence")
	}
}

// firstLogit is Forward's first logit for a one-token sequence.
func firstLogit(t *testing.T, m *Model[float32], be kernels.Backend[float32], tok int32) float32 {
	t.Helper()
	var b data.Batch
	b.Resize(1, 1)
	b.Tokens[0] = tok
	m.Forward(&b)
	return kernels.ToHost(be, m.Logits())[0]
}
