package model

import (
	"runtime"
	"testing"

	"github.com/herdml/herd/kernels/device"
)

// TestStepAllocatesNothing: a model's forward and backward passes reach a steady state in
// which they allocate nothing, on one thread and on several (the kernels' worker pool and
// recycled scratch), so that training puts no load on the garbage collector: a dense model,
// one with MoE layers (routing, expert loads, top-2 with a shared expert), and that one
// with Llama 4's options (the batch load's chunk ids and temperatures).
//
// Counted with runtime.MemStats around windows of 10 passes (testing.AllocsPerRun runs on
// one thread only); the test passes when one of the first windows allocates nothing at
// all. The windows before it may allocate while the recycled scratch grows to what the
// threads use at once (the first time two threads happen to overlap in an op, which on a
// busy machine may take a while) and while the Go runtime's own caches settle (a goroutine
// that blocks takes a record from a per-processor cache that garbage collections empty,
// and returns it to the cache of the processor it resumes on, so that with more threads
// than free cores one cache fills while another allocates: see trainer's test of the same
// name).
func TestStepAllocatesNothing(t *testing.T) {
	dense := Config{VocabSize: 64, DModel: 64, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNHidden: 96,
		SeqLen: 64, RopeTheta: 10000, NormEps: 1e-5}
	moe := dense
	moe.MoE = MoE{Experts: 4, TopK: 2, SharedExpert: true, Every: 2, ExpertHidden: 32, AuxLoss: 0.01}
	llama4 := moe
	llama4.NoPEEvery, llama4.QKNorm, llama4.AttentionChunk, llama4.MoE.ScoreOnInput = 2, true, 16, true
	llama4.AttnTemperature = AttnTemperature{FloorScale: 8, Scale: 0.1}
	const B, passes, windows = 2, 10, 20
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"dense", dense}, {"moe", moe}, {"llama4 options", llama4}} {
		m := New[float32](c.cfg, device.CPU[float32](), B)
		m.Init(1, func(Tensor) float64 { return 0.02 })
		batch := randomBatch(c.cfg, B)
		for _, threads := range []int{1, 2, 3} {
			runtime.GOMAXPROCS(threads)
			var counts []uint64
			for range windows {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for range passes {
					m.Forward(batch)
					m.Backward(1)
				}
				runtime.ReadMemStats(&after)
				if counts = append(counts, after.Mallocs-before.Mallocs); counts[len(counts)-1] == 0 {
					break
				}
			}
			if counts[len(counts)-1] != 0 {
				t.Errorf("%s, %d threads: allocations in successive windows of %d forward/backward passes: %v, want a window of 0",
					c.name, threads, passes, counts)
			}
			t.Logf("%s, %d threads: allocations per window of %d passes until none: %v", c.name, threads, passes, counts)
		}
	}
}
