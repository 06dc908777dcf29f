package trainer

import (
	"runtime"
	"testing"

	"github.com/herdml/herd/trainer/config"
)

// TestStepAllocatesNothing: a training step (forward, backward, gradient norm, clipping,
// AdamW; in fp8 also every quantization and the scaling update) of a small dense model
// and of a small MoE model (the tiny preset shrunk, two micro-batches a step, so that the
// expert-load table is summed over them) reaches a steady state in which it allocates
// nothing, on one thread and on several, so that training puts no load on the garbage
// collector.
//
// Counted with runtime.MemStats around windows of steps, as trainer/model's test of the
// same name does (testing.AllocsPerRun runs on one thread only): the test passes when one
// of the first windows allocates nothing at all; the windows before it may allocate while
// recycled scratch grows to what the threads use at once and the runtime's caches settle.
// The clipping limit is low enough that every step scales the gradients.
func TestStepAllocatesNothing(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, model := range []string{"dense", "moe"} {
		for _, precision := range []string{"fp32", "fp8"} {
			tr := smallTrainer(t, model, precision)
			for _, threads := range []int{1, 2, 3} {
				runtime.GOMAXPROCS(threads)
				counts := stepAllocs(t, tr)
				if counts[len(counts)-1] != 0 {
					t.Errorf("%s %s, %d threads: allocations in successive windows of %d steps: %v, want a window of 0", model, precision, threads, stepsPerWindow, counts)
				}
				t.Logf("%s %s, %d threads: allocations per window of %d steps until none: %v", model, precision, threads, stepsPerWindow, counts)
			}
		}
	}
}

const stepsPerWindow = 4

// smallTrainer is examples/dense-bench.yaml ("dense") or examples/tiny.yaml ("moe", on
// random tokens) shrunk to a few milliseconds a step.
func smallTrainer(t *testing.T, model, precision string) *Trainer {
	file, set := "../examples/dense-bench.yaml", []string{"model.d_model=64", "model.ffn_hidden=192", "train.micro_batch=4"}
	if model == "moe" {
		file, set = "../examples/tiny.yaml", []string{`data.train=""`, `data.eval=""`, "data.synthetic=true",
			"model.d_model=64", "model.ffn_hidden=96", "model.moe.expert_hidden=32", "train.micro_batch=2"}
	}
	cfg, err := config.Load(file, append(set, "train.checkpoint.dir="+t.TempDir(),
		"model.n_layers=2", "model.seq_len=64", "train.global_batch=4", "train.steps=1000", "train.optim.clip=0.001",
		"train.precision="+precision))
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
// that makes none (which it returns last) or 40 windows. On two threads the last few
// allocations (the Go runtime's record for a goroutine that blocks, a free list growing
// when the threads first overlap in some op) come in bursts several windows apart. With
// more threads than free cores (3 threads while other test binaries run, as in CI) the
// blocking records take longer to settle: a goroutine takes one from the cache of the
// processor it blocks on and returns it to the one it resumes on, and the kernels' pool
// (whose idle workers yield while they poll) moves goroutines between processors often,
// so one processor's cache fills (up to 128 records before it spills to the shared one)
// while another allocates (a CI run saw 12 windows of 2 to 14 allocations, none empty).
func stepAllocs(t *testing.T, tr *Trainer) []uint64 {
	var counts []uint64
	for range 40 {
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
