package cpu

import (
	"runtime"
	"sync"
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
