package collective

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkAllReduce reports the bus bandwidth (2(W-1)/W × bytes per call / time, the
// bytes each link carries, as NCCL's tests define it) of the ring and the tree all-reduce
// at world 2 and 4, and its ratio to a raw TCP stream over loopback measured in the same
// run: how much of the link gRPC and the algorithm leave unused.
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
	tcp := tcpBandwidth(b, bytes)
	gs := group(b, world, Options{})
	xs := inputs(world, bytes/4, 1)
	b.SetBytes(int64(bytes))
	b.ResetTimer()
	for range b.N {
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
	bus := 2 * float64(world-1) / float64(world) * float64(bytes) * float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(bus/1e9, "busGB/s")
	b.ReportMetric(tcp/1e9, "tcpGB/s")
	b.ReportMetric(bus/tcp, "ratio")
}

// tcpBandwidth is the rate of one raw TCP stream over loopback carrying n bytes (at least
// 64 MiB, so that connection set-up does not count), in bytes per second.
func tcpBandwidth(b *testing.B, n int) float64 {
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
	start := time.Now()
	for sent := 0; sent < n; sent += len(buf) {
		if _, err := c.Write(buf[:min(len(buf), n-sent)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-got; err != nil {
		b.Fatal(err)
	}
	secs := time.Now().Sub(start).Seconds()
	b.StartTimer()
	return float64(n) / secs
}
