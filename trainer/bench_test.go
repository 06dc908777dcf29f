package trainer

import (
	"fmt"
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

// BenchmarkTrainStepShapes is the dense benchmark model with a longer sequence or a wider
// model (ffn_hidden 3·d_model, 4 heads), one shape per sub-benchmark, for how the step
// time grows (bench/train_step.sh runs each beside PyTorch).
func BenchmarkTrainStepShapes(b *testing.B) {
	for _, c := range []struct {
		name     string
		seq, dim int
	}{{"seq512", 512, 256}, {"seq1024", 1024, 256}, {"d512", 256, 512}, {"d1024", 256, 1024}} {
		b.Run(c.name, func(b *testing.B) {
			cfg, err := config.Load("../examples/dense-bench.yaml", []string{"train.checkpoint.dir=" + b.TempDir(),
				fmt.Sprintf("model.seq_len=%d", c.seq), fmt.Sprintf("model.d_model=%d", c.dim), fmt.Sprintf("model.ffn_hidden=%d", 3*c.dim)})
			if err != nil {
				b.Fatal(err)
			}
			benchSteps(b, cfg)
		})
	}
}

// BenchmarkTrainStepPrecision puts fp32 and fp8 steps (emulated; fp8 is delayed scaling,
// fp8-blockwise the blockwise recipe) side by side: on the dense benchmark model, and on the
// tiny and small presets (MoE on every other layer) with micro-batches of 8 on random
// tokens. Compare ms/step of the pairs.
func BenchmarkTrainStepPrecision(b *testing.B) {
	for _, c := range []struct{ name, file string }{
		{"dense", "../examples/dense-bench.yaml"},
		{"tiny", "../examples/tiny.yaml"},
		{"small", "../examples/small.yaml"},
	} {
		for _, p := range []struct{ name, precision, recipe string }{
			{"fp32", "fp32", "delayed"}, {"fp8", "fp8", "delayed"}, {"fp8-blockwise", "fp8", "blockwise"},
		} {
			b.Run(c.name+"/"+p.name, func(b *testing.B) {
				cfg, err := config.Load(c.file, []string{"train.checkpoint.dir=" + b.TempDir(), "train.precision=" + p.precision,
					"train.fp8.recipe=" + p.recipe, `data.train=""`, `data.eval=""`, "data.synthetic=true", "train.global_batch=8", "train.micro_batch=8"})
				if err != nil {
					b.Fatal(err)
				}
				benchSteps(b, cfg)
			})
		}
	}
}

// benchSteps runs b.N optimizer steps of cfg after two untimed steps (the first touch of
// every buffer, and the recycled scratch filling up) and reports tokens/s, ms/step,
// cpu-ms/step (the CPU time of all the process's threads per step, which on a shared
// machine moves less with the load than the wall time does), and peak-MiB, the process's
// peak resident memory so far (run one benchmark per process for a figure per config).
func benchSteps(b *testing.B, cfg config.Run) {
	tr, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	b.Logf("kernels: %s", tr.Kernels())
	for range 2 {
		if _, err := tr.Step(); err != nil {
			b.Fatal(err)
		}
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
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-MiB") // Maxrss is in KiB on Linux
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
