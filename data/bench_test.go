package data

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkReadGoSources reads every .go file of GOROOT/src, as the demo does.
func BenchmarkReadGoSources(b *testing.B) {
	var n int64
	for b.Loop() {
		c, err := ReadCorpus("${GOROOT}/src/**/*.go")
		if err != nil {
			b.Fatal(err)
		}
		n = int64(len(c.Bytes))
	}
	b.SetBytes(n)
}

// BenchmarkShardReadVsScan reads every row of a packed slice of the Go sources through
// the mmap reader and the sampler, one goroutine, from the page cache, and compares it
// with a plain scan of the same tokens already in memory.
func BenchmarkShardReadVsScan(b *testing.B) {
	dir := b.TempDir()
	m, err := Pack(TextFiles("${GOROOT}/src/net/**/*.go", nil), PackOptions{Out: dir, SeqLen: 256})
	if err != nil {
		b.Fatal(err)
	}
	const M = 8
	s, err := Open(dir, 256, M, M, 0, 1, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	flat := make([]int32, m.Rows*257)
	for i := range flat {
		flat[i] = int32(i)
	}
	steps := int(m.Rows / M)
	tokens := float64(steps * M * 256)
	var batch Batch
	var read, scan time.Duration
	var sink int32
	for b.Loop() {
		t0 := time.Now()
		for range steps {
			if err := s.Next(&batch); err != nil {
				b.Fatal(err)
			}
			sink += batch.Tokens[0]
		}
		t1 := time.Now()
		for _, v := range flat {
			sink ^= v
		}
		read, scan = read+t1.Sub(t0), scan+time.Since(t1)
	}
	b.ReportMetric(tokens*float64(b.N)/read.Seconds(), "tokens/s")
	b.ReportMetric(tokens*float64(b.N)/scan.Seconds(), "scan-tokens/s")
	b.ReportMetric(read.Seconds()/scan.Seconds(), "read/scan")
	if sink == 42 {
		b.Log(sink)
	}
}

// BenchmarkFlightVsLocal reads every row of a dataset in order over Arrow Flight on
// loopback, and through the local mmap reader, and reports both in MB/s of shard data.
func BenchmarkFlightVsLocal(b *testing.B) {
	dir := b.TempDir()
	m, err := Pack(TextFiles("${GOROOT}/src/net/**/*.go", nil), PackOptions{Out: filepath.Join(dir, "net"), SeqLen: 256})
	if err != nil {
		b.Fatal(err)
	}
	srv := NewFlightServer(dir)
	gs, lis, err := srv.Listen(ServeOptions{Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	go gs.Serve(lis)
	defer func() { gs.Stop(); srv.Close() }()
	bytes := 0.0
	for _, s := range m.Shards {
		bytes += float64(s.Bytes)
	}
	readAll := func(open func() (*Shards, error)) time.Duration {
		sh, err := open()
		if err != nil {
			b.Fatal(err)
		}
		defer sh.Close()
		t0 := time.Now()
		var r Row
		for i := int64(0); i < sh.Manifest.Rows; i++ {
			if err := sh.Row(i, &r); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	var remote, local time.Duration
	for b.Loop() {
		remote += readAll(func() (*Shards, error) { return OpenRemote("grpc://" + lis.Addr().String() + "/net") })
		local += readAll(func() (*Shards, error) { return OpenShards(filepath.Join(dir, "net", ManifestName), nil) })
	}
	b.ReportMetric(bytes*float64(b.N)/remote.Seconds()/1e6, "flight-MB/s")
	b.ReportMetric(bytes*float64(b.N)/local.Seconds()/1e6, "local-MB/s")
}
