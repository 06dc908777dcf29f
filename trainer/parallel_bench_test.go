package trainer

import (
	"fmt"
	"testing"

	"github.com/herdml/herd/trainer/config"
)

// BenchmarkDataParallelStep is one optimizer step of the tiny preset on random tokens,
// global batch 8 in micro-batches of 2, on 1, 2 and 4 in-process ranks: the same work and
// the same result (bit-identical), so ms/step against ranks=1 is the cost of data
// parallelism here: per-unit gradient trees, the all-reduce over loopback, every rank's
// own AdamW, and the ranks sharing the machine's cores. cpu-ms/step is the process's CPU
// time per step, which other load on a shared machine does not inflate as it does the
// wall time.
func BenchmarkDataParallelStep(b *testing.B) {
	for _, ranks := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("ranks=%d", ranks), func(b *testing.B) {
			cfg, err := config.Load("../examples/tiny.yaml", []string{"train.checkpoint.dir=" + b.TempDir(),
				`data.train=""`, `data.eval=""`, "data.synthetic=true", "train.global_batch=8", "train.micro_batch=2",
				fmt.Sprintf("parallel.data=%d", ranks)})
			if err != nil {
				b.Fatal(err)
			}
			tr, err := New(cfg, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			if _, err := tr.Step(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for range b.N {
				if _, err := tr.Step(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((cpuTime(b)-cpu0).Seconds()*1e3/float64(b.N), "cpu-ms/step")
			tokens := cfg.Train.GlobalBatch * cfg.Model.SeqLen
			b.ReportMetric(float64(tokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/step")
			b.ReportMetric(float64(tr.Model.Params.Len())*4/1e6, "gradMB")
		})
	}
}
