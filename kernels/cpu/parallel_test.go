package cpu

import (
	"runtime"
	"testing"
	"time"
)

// busyTask spends per of CPU on every index: a loop body whose cost does not depend on
// the memory it touches.
type busyTask struct{ per time.Duration }

func (t *busyTask) run(lo, hi int) {
	for range hi - lo {
		for t0 := time.Now(); time.Since(t0) < t.per; {
		}
	}
}

// BenchmarkForkJoin times parallel calls of 8 equal chunks, back to back or after a serial
// gap (a step's parallel calls are separated by serial work), and reports each call's wall
// time beside the ideal, its work over the threads: what starting and joining the pool's
// workers costs a short loop.
func BenchmarkForkJoin(b *testing.B) {
	for _, work := range []time.Duration{20 * time.Microsecond, 100 * time.Microsecond, 400 * time.Microsecond} {
		for _, gap := range []time.Duration{0, 100 * time.Microsecond, time.Millisecond} {
			b.Run(work.String()+"/gap"+gap.String(), func(b *testing.B) {
				t := busyTask{work / 8}
				for b.Loop() {
					parallelFor[busyTask](8, 1, t)
					for t0 := time.Now(); time.Since(t0) < gap; {
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)-float64(gap.Microseconds()), "µs/call")
				b.ReportMetric(float64(work.Microseconds())/float64(runtime.GOMAXPROCS(0)), "ideal-µs")
			})
		}
	}
}
