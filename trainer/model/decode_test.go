package model

import (
	"math"
	"slices"
	"testing"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/kernels/fp8"
)

// decodeTol bounds |Step's logit - Forward's| relative to the largest |logit| of the row.
// The two differ by rounding only: the decoder's attention softmax is computed in float64
// (Route's), Forward's in float32 with a polynomial exp of relative error below 3e-7, and
// the GEMMs may sum one row in another order than many. Measured on kernels/cpu: 8.2e-7
// over the 48 positions of this test, about 7 float32 ulps of the largest logit.
const decodeTol = 1e-5

// TestDecoderMatchesForward: greedy decoding with the KV cache gives exactly the tokens, and
// logits within decodeTol, of recomputing the whole prefix with Forward at every step, on
// the tiny preset (MoE every 2nd layer with a shared expert, NoPE on the 4th layer,
// grouped-query attention) with random weights large enough that the tokens vary; also
// with FP8 training's activation codec set, whose buffers the decoder must not read; and
// with all of Llama 4's options on (qk_norm, attention chunks of 16 positions, a
// temperature that grows from position 7 on, gates on the experts' inputs).
func TestDecoderMatchesForward(t *testing.T) {
	for _, c := range []struct{ codec, llama4 bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		codec := c.codec
		cfg := Presets["tiny"]
		cfg.SeqLen = 48
		if c.llama4 {
			cfg.QKNorm, cfg.AttentionChunk, cfg.MoE.ScoreOnInput = true, 16, true
			cfg.AttnTemperature = AttnTemperature{FloorScale: 8, Scale: 0.5}
		}
		be := device.CPU[float32]()
		m := New[float32](cfg, be, 1)
		m.Init(3, func(t Tensor) float64 { return 0.5 / math.Sqrt(float64(t.Shape[len(t.Shape)-1])) })
		if codec {
			m.SetCodec(fp8.NewTileCodec(be))
		}
		decodeMatchesForward(t, m, be)
	}
}

func decodeMatchesForward(t *testing.T, m *Model[float32], be kernels.Backend[float32]) {
	cfg := m.Cfg
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

// BenchmarkGenerate generates a full sequence of the tiny preset, 256 positions, greedily:
// with the KV cache, and by recomputing the prefix with Forward at every position.
func BenchmarkGenerate(b *testing.B) {
	cfg := Presets["tiny"]
	be := device.CPU[float32]()
	m := New[float32](cfg, be, 1)
	m.Init(3, func(t Tensor) float64 { return 0.5 / math.Sqrt(float64(t.Shape[len(t.Shape)-1])) })
	T := cfg.SeqLen
	b.Run("kv-cache", func(b *testing.B) {
		dec := m.NewDecoder()
		for range b.N {
			dec.Reset()
			tok := int32('f')
			for dec.Len() < T {
				tok = Argmax(dec.Step(tok))
			}
		}
		b.ReportMetric(float64(b.N*T)/b.Elapsed().Seconds(), "tokens/s")
	})
	b.Run("recompute", func(b *testing.B) {
		var batch data.Batch
		for range b.N {
			seq := []int32{'f'}
			for len(seq) <= T {
				batch.Resize(1, len(seq))
				for i := range seq {
					batch.Tokens[i], batch.Targets[i], batch.Pos[i], batch.Doc[i], batch.Mask[i] = seq[i], 0, int32(i), 0, 0
				}
				m.Forward(&batch)
				if len(seq) == T {
					break
				}
				seq = append(seq, Argmax(kernels.ToHost(be, m.Logits())[(len(seq)-1)*cfg.VocabSize:]))
			}
		}
		b.ReportMetric(float64(b.N*T)/b.Elapsed().Seconds(), "tokens/s")
	})
}
