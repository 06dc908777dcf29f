package cpu

import (
	"math/rand/v2"
	"runtime"
	"testing"
)

// BenchmarkAttention is one forward and backward of causal attention at the dense
// benchmark model's shape (B 8, T 256, 4 heads of 64, one document per sequence), in
// GFLOP/s of the products the causal mask needs (Q·Kᵀ and P·V forward, five products
// backward, each over the T(T+1)/2 visible pairs). With GOMAXPROCS=1 it also reports
// cpu-GFLOP/s over the thread's CPU time, which a busy machine does not inflate.
func BenchmarkAttention(b *testing.B) {
	const B, T, H, D = 8, 256, 4, 64
	r := rand.New(rand.NewPCG(1, 1))
	q, k, v, dout := randSlice(r, B*T*H*D), randSlice(r, B*T*H*D), randSlice(r, B*T*H*D), randSlice(r, B*T*H*D)
	out, lse := make([]float32, B*T*H*D), make([]float32, B*T*H)
	dq, dk, dv := make([]float32, B*T*H*D), make([]float32, B*T*H*D), make([]float32, B*T*H*D)
	doc := make([]int32, B*T)
	be := New[float32]()
	single := runtime.GOMAXPROCS(0) == 1
	if single {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	step := func() {
		be.attention(out, lse, q, k, v, doc, B, T, H, H, D, 0.125)
		be.attentionBackward(dq, dk, dv, dout, out, lse, q, k, v, doc, B, T, H, H, D, 0.125)
	}
	step()
	cpu0, cpuOK := threadCPUTime()
	b.ResetTimer()
	for b.Loop() {
		step()
	}
	b.StopTimer()
	flops := 7 * 2 * float64(B*H) * float64(T*(T+1)/2) * D * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu1, ok := threadCPUTime(); single && cpuOK && ok {
		b.ReportMetric(flops/(cpu1-cpu0).Seconds()/1e9, "cpu-GFLOP/s")
	}
}
