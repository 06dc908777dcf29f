package trainer

import (
	"runtime"
	"testing"

	"github.com/herdml/herd/trainer/config"
)

// TestStepAllocatesNothing: a training step (forward, backward, gradient norm, clipping,
// AdamW; in fp8 also every quantization and the scaling update) of a small dense model
// reaches a steady state in which it allocates nothing, on one thread and on several, so
// that training puts no load on the garbage collector.
//
// Counted with runtime.MemStats around windows of steps, as trainer/model's test of the
// same name does (testing.AllocsPerRun runs on one thread only): the test passes when one
// of the first windows allocates nothing at all; the windows before it may allocate while
// recycled scratch grows to what the threads use at once and the runtime's caches settle.
// The clipping limit is low enough that every step scales the gradients.
func TestStepAllocatesNothing(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, precision := range []string{"fp32", "fp8"} {
		tr := smallDenseTrainer(t, precision)
		for _, threads := range []int{1, 2, 3} {
			runtime.GOMAXPROCS(threads)
			counts := stepAllocs(t, tr)
			if counts[len(counts)-1] != 0 {
				t.Errorf("%s, %d threads: allocations in successive windows of %d steps: %v, want a window of 0", precision, threads, stepsPerWindow, counts)
			}
			t.Logf("%s, %d threads: allocations per window of %d steps until none: %v", precision, threads, stepsPerWindow, counts)
		}
	}
}

const stepsPerWindow = 4

// smallDenseTrainer is examples/dense-bench.yaml shrunk to a few milliseconds a step.
func smallDenseTrainer(t *testing.T, precision string) *Trainer {
	cfg, err := config.Load("../examples/dense-bench.yaml", []string{"train.checkpoint.dir=" + t.TempDir(),
		"model.d_model=64", "model.ffn_hidden=192", "model.n_layers=2", "model.seq_len=64",
		"train.global_batch=4", "train.micro_batch=4", "train.steps=1000", "train.optim.clip=0.001",
		"train.precision=" + precision})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// stepAllocs counts the allocations of successive windows of steps, up to the first window
// that makes none (which it returns last) or 6 windows.
func stepAllocs(t *testing.T, tr *Trainer) []uint64 {
	var counts []uint64
	for range 6 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range stepsPerWindow {
			if _, err := tr.Step(); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		if counts = append(counts, after.Mallocs-before.Mallocs); counts[len(counts)-1] == 0 {
			break
		}
	}
	return counts
}
