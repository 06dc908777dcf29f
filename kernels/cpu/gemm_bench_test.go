package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// gemmBenchShapes are issue 7's sizes: square, the FFN-like 4096×768×3072 and the
// attention-projection-like 2048×256×768.
var gemmBenchShapes = [][3]int{{1024, 1024, 1024}, {2048, 2048, 2048}, {4096, 768, 3072}, {2048, 256, 768}}

// BenchmarkMatMul reports GFLOP/s of the active kernel at each shape (M×K×N) and
// transpose variant: NN = a·b, TN = aᵀ·b, NT = a·bᵀ, TT = aᵀ·bᵀ.
func BenchmarkMatMul(b *testing.B) {
	for _, s := range gemmBenchShapes {
		for _, v := range []struct {
			name           string
			transA, transB bool
		}{{"NN", false, false}, {"TN", true, false}, {"NT", false, true}, {"TT", true, true}} {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", s[0], s[1], s[2], v.name), func(b *testing.B) {
				benchGEMM(b, active, s[0], s[1], s[2], v.transA, v.transB)
			})
		}
	}
}

// BenchmarkMatMulImpl puts every available implementation side by side, the plain-Go
// one included, at a size the Go kernel finishes quickly.
func BenchmarkMatMulImpl(b *testing.B) {
	for _, im := range impls {
		if im.available {
			b.Run(im.name, func(b *testing.B) { benchGEMM(b, im, 256, 256, 256, false, false) })
		}
	}
}

// benchGEMM reports GFLOP/s over wall time and, with one thread (GOMAXPROCS=1, where the
// whole GEMM runs on the benchmark's goroutine), also over the thread's CPU time
// (cpu-GFLOP/s), which time given to other processes on a busy machine does not inflate.
func benchGEMM(b *testing.B, im *gemmImpl, m, k, n int, transA, transB bool) {
	r := rand.New(rand.NewPCG(1, 1))
	x, y, c := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
	single := runtime.GOMAXPROCS(0) == 1
	if single {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	im.matMul(c, x, y, m, k, n, transA, transB, false) // warm the buffer pool
	cpu0, cpuOK := threadCPUTime()
	b.ResetTimer()
	for b.Loop() {
		im.matMul(c, x, y, m, k, n, transA, transB, false)
	}
	b.StopTimer()
	flops := 2 * float64(m) * float64(k) * float64(n) * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu1, ok := threadCPUTime(); single && cpuOK && ok {
		b.ReportMetric(flops/(cpu1-cpu0).Seconds()/1e9, "cpu-GFLOP/s")
	}
}
