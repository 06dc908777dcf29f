package trainer

import (
	"syscall"
	"testing"
	"time"

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
	benchSteps(b, cfg)
}

// BenchmarkTrainStepPrecision puts fp32 and fp8 (delayed scaling, emulated) steps side by
// side: on the dense benchmark model, and on the small preset (MoE on every other layer)
// with micro-batches of 8 on random tokens. Compare ms/step of the pairs.
func BenchmarkTrainStepPrecision(b *testing.B) {
	for _, c := range []struct{ name, file string }{
		{"dense", "../examples/dense-bench.yaml"},
		{"small", "../examples/small.yaml"},
	} {
		for _, precision := range []string{"fp32", "fp8"} {
			b.Run(c.name+"/"+precision, func(b *testing.B) {
				cfg, err := config.Load(c.file, []string{"train.checkpoint.dir=" + b.TempDir(), "train.precision=" + precision,
					`data.train=""`, `data.eval=""`, "data.synthetic=true", "train.global_batch=8", "train.micro_batch=8"})
				if err != nil {
					b.Fatal(err)
				}
				benchSteps(b, cfg)
			})
		}
	}
}

// benchSteps runs b.N optimizer steps of cfg after one untimed step (the first touch of
// every buffer) and reports tokens/s, ms/step and cpu-ms/step: the CPU time of all the
// process's threads per step, which on a shared machine moves less with the load than
// the wall time does.
func benchSteps(b *testing.B, cfg config.Run) {
	tr, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Step(); err != nil {
		b.Fatal(err)
	}
	var tokens int64
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		st, err := tr.Step()
		if err != nil {
			b.Fatal(err)
		}
		tokens += st.Tokens
	}
	b.StopTimer()
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/step")
	b.ReportMetric((cpuTime(b)-cpu0).Seconds()*1e3/float64(b.N), "cpu-ms/step")
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
