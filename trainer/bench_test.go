package trainer

import (
	"testing"

	"github.com/herdml/herd/trainer/config"
)

// BenchmarkTrainStep is one optimizer step (forward, backward, clipping, AdamW) of the
// dense benchmark model of examples/dense-bench.yaml on random tokens, in tokens/s.
// bench/train_step.sh runs PyTorch on the same model beside it.
func BenchmarkTrainStep(b *testing.B) {
	cfg, err := config.Load("../examples/dense-bench.yaml", []string{"train.checkpoint.dir=" + b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	m := cfg.Model
	if m.VocabSize != 256 || m.DModel != 256 || m.NLayers != 4 || m.NHeads != 4 || m.NKVHeads != 4 || m.FFNHidden != 768 ||
		m.SeqLen != 256 || m.MoE.Experts != 0 || cfg.Train.GlobalBatch != 8 || cfg.Train.Precision != "fp32" || !cfg.Data.Synthetic {
		b.Fatalf("examples/dense-bench.yaml is no longer the benchmark config (V256 C256 L4 H4/4 F768 T256 B8 fp32, synthetic): %v", m)
	}
	tr, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tr.Step(); err != nil { // first touch of every buffer
		b.Fatal(err)
	}
	var tokens int64
	b.ResetTimer()
	for range b.N {
		st, err := tr.Step()
		if err != nil {
			b.Fatal(err)
		}
		tokens += st.Tokens
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}
