package collective

import (
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAllReduce reports the bus bandwidth (2(W-1)/W × bytes per call / time, the
// bytes each link carries, as NCCL's tests define it) of the ring and the tree all-reduce
// at world 2 and 4, and its ratio to a raw TCP stream over loopback measured in the same
// run: how much of the link the transport and the algorithm leave unused. On a shared
// machine the wall-clock figures swing with other load, so it also reports the bytes
// carried over all links per CPU-second of the process (cpuGB/s; every rank runs in it)
// beside the TCP stream's, and their ratio: the cost per byte, whatever the load.
func BenchmarkAllReduce(b *testing.B) {
	for _, world := range []int{2, 4} {
		for _, mb := range []int{1, 16, 256} {
			for _, algo := range []string{"ring", "tree"} {
				b.Run(fmt.Sprintf("W%d/%dMB/%s", world, mb, algo), func(b *testing.B) {
					benchAllReduce(b, world, mb<<20, algo)
				})
			}
		}
	}
}

func benchAllReduce(b *testing.B, world, bytes int, algo string) {
	tcp, tcpCPU := tcpBandwidth(b, bytes)
	gs := group(b, world, Options{})
	xs := inputs(world, bytes/4, 1)
	call := func() {
		errs := each(gs, func(g *Group) error {
			if algo == "ring" {
				return g.AllReduce(context.Background(), xs[g.Rank()], Sum)
			}
			return g.AllReduceTree(context.Background(), xs[g.Rank()])
		})
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	call() // opens the links, which a training run does once
	b.SetBytes(int64(bytes))
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		call()
	}
	busBytes := 2 * float64(world-1) / float64(world) * float64(bytes) * float64(b.N)
	cpu := busBytes * float64(world) / (cpuTime() - cpu0).Seconds() // all W links' bytes: every rank runs here
	bus := busBytes / b.Elapsed().Seconds()
	b.ReportMetric(bus/1e9, "busGB/s")
	b.ReportMetric(tcp/1e9, "tcpGB/s")
	b.ReportMetric(bus/tcp, "ratio")
	b.ReportMetric(cpu/1e9, "cpuGB/s")
	b.ReportMetric(tcpCPU/1e9, "tcpCPUGB/s")
	b.ReportMetric(cpu/tcpCPU, "cpuRatio")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tcpBandwidth is the rate of one raw TCP stream over loopback carrying n bytes (at least
// 64 MiB, so that connection set-up does not count), in bytes per second of wall time and
// per CPU-second of both ends.
func tcpBandwidth(b *testing.B, n int) (wall, cpu float64) {
	n = max(n, 64<<20)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer lis.Close()
	got := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		_, err = io.CopyN(io.Discard, c, int64(n))
		got <- err
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, pieceBytes)
	b.StopTimer()
	start, cpu0 := time.Now(), cpuTime()
	for sent := 0; sent < n; sent += len(buf) {
		if _, err := c.Write(buf[:min(len(buf), n-sent)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-got; err != nil {
		b.Fatal(err)
	}
	secs, cpuSecs := time.Since(start).Seconds(), (cpuTime() - cpu0).Seconds()
	b.StartTimer()
	return float64(n) / secs, float64(n) / cpuSecs
}
