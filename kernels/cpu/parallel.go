package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// parallelFor runs body over [0, n) split into contiguous chunks of at least grain
// iterations, one goroutine per chunk, up to GOMAXPROCS chunks. The split depends only on
// n, grain and GOMAXPROCS, and each index is handled by exactly one call, so a body that
// writes only its own indices gives the same result however the goroutines are scheduled.
func parallelFor(n, grain int, body func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	chunks := min(runtime.GOMAXPROCS(0), (n+grain-1)/grain)
	if chunks <= 1 {
		body(0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + chunks - 1) / chunks
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			body(lo, hi)
		}()
	}
	wg.Wait()
}

// parallelChunks runs body(i) for every i in [0, n) on up to threads goroutines, the
// caller's included, each taking the next index from a shared counter. A goroutine that
// the scheduler delays (on a machine shared with other work) then holds up at most one
// chunk instead of a fixed share. Which goroutine runs a chunk is left to chance, so body
// must compute chunk i the same way whoever runs it, and write only chunk i's outputs.
func parallelChunks(n, threads int, body func(i int)) {
	threads = min(threads, n)
	if threads <= 1 {
		for i := 0; i < n; i++ {
			body(i)
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
			body(i)
		}
	}
	var wg sync.WaitGroup
	for range threads - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}
