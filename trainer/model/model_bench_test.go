package model

import (
	"math/rand/v2"
	"testing"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/kernels/device"
)

// benchConfigs are the dense reference config (PyTorch CPU does about 3,500
// tokens/s on 2 cores, forward+backward+AdamW) and the tiny preset with its MoE layers.
var benchConfigs = []struct {
	name string
	cfg  Config
}{
	{"dense256", Config{VocabSize: 256, DModel: 256, NLayers: 4, NHeads: 4, NKVHeads: 4, FFNHidden: 768,
		SeqLen: 256, RopeTheta: 500000, NormEps: 1e-5}},
	{"tiny", Presets["tiny"]},
}

// BenchmarkForwardBackward measures one micro-batch of 8 sequences through forward and
// backward in float32 (no optimizer step).
func BenchmarkForwardBackward(b *testing.B) {
	for _, bc := range benchConfigs {
		b.Run(bc.name, func(b *testing.B) {
			const B = 8
			m := New[float32](bc.cfg, device.CPU[float32](), B)
			m.Init(1, func(Tensor) float64 { return 0.02 })
			batch := randomBatch(bc.cfg, B)
			b.ResetTimer()
			for range b.N {
				m.Forward(batch)
				m.Backward(1)
			}
			b.ReportMetric(float64(b.N*B*bc.cfg.SeqLen)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// randomBatch is B sequences of random tokens, each packing two documents.
func randomBatch(cfg Config, B int) *data.Batch {
	rng := rand.New(rand.NewPCG(1, 2))
	T := cfg.SeqLen
	batch := &data.Batch{}
	batch.Resize(B, T)
	for i := range B * T {
		t := i % T
		batch.Tokens[i] = int32(rng.IntN(cfg.VocabSize))
		batch.Targets[i] = int32(rng.IntN(cfg.VocabSize))
		batch.Mask[i] = 1
		batch.Doc[i] = int32(t * 2 / T)
		batch.Pos[i] = int32(t % (T / 2))
	}
	return batch
}
