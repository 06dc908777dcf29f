package model

import (
	"runtime"
	"testing"

	"github.com/herdml/herd/kernels/cpu"
)

// TestStepAllocatesNothing: once a model has run a few micro-batches, its forward and
// backward passes allocate nothing, on one thread and on several (the kernels' worker pool
// and recycled scratch), so that training puts no load on the garbage collector.
//
// Counted as testing.AllocsPerRun counts, the mean per pass rounded down, but with
// runtime.MemStats around passes at 1, 2 and 3 threads (AllocsPerRun runs on one thread).
// Rounding down leaves room for the Go runtime's own bookkeeping: a goroutine that blocks
// takes a record from a per-processor cache, which, while the caches settle, now and then
// needs a new one (about one in 30 runs of this test sees one such allocation).
func TestStepAllocatesNothing(t *testing.T) {
	cfg := Config{VocabSize: 64, DModel: 64, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNHidden: 96,
		SeqLen: 64, RopeTheta: 10000, NormEps: 1e-5}
	const B = 2
	m := New[float32](cfg, cpu.New[float32](), B)
	m.Init(1, func(Tensor) float64 { return 0.02 })
	batch := randomBatch(cfg, B)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, threads := range []int{1, 2, 3} {
		runtime.GOMAXPROCS(threads)
		// First uses at this thread count: workers start, and the recycled scratch grows to
		// what the threads use at once.
		for range 3 {
			m.Forward(batch)
			m.Backward(1)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const passes = 10
		for range passes {
			m.Forward(batch)
			m.Backward(1)
		}
		runtime.ReadMemStats(&after)
		if n := after.Mallocs - before.Mallocs; n/passes != 0 {
			t.Errorf("%d threads: %d allocations in %d forward/backward passes, want 0 per pass", threads, n, passes)
		}
	}
}
