package trainer

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/herdml/herd/internal/s3test"
	"github.com/herdml/herd/trainer/config"
)

// BenchmarkCheckpointToBucket is issue 20's must-show 2: the demo config
// (examples/tiny.yaml, on random tokens) trains 60 steps without checkpoints and 60 steps
// with a checkpoint to a bucket every 20 steps, written in the background
// (train.checkpoint.async: 1) to a SeaweedFS server on loopback. It reports the median
// step time of each, the overhead of the median, and the whole runs' mean step times; the
// two runs alternate over b.N rounds. Run it with
//
//	go test ./trainer -run '^$' -bench CheckpointToBucket -benchtime 3x
func BenchmarkCheckpointToBucket(b *testing.B) {
	s3test.Start(b)
	const steps = 60
	run := func(sets ...string) (median, mean time.Duration) {
		cfg, err := config.Load("../examples/tiny.yaml", append([]string{`data.train=""`, `data.eval=""`, "data.synthetic=true",
			"train.eval.every=0", "train.eval.batches=1", "train.checkpoint.dir=" + b.TempDir(), "train.steps=" + strconv.Itoa(steps)}, sets...))
		if err != nil {
			b.Fatal(err)
		}
		var times []time.Duration
		last := time.Now()
		tr, err := New(cfg, Options{Progress: func(Stats) {
			now := time.Now()
			times = append(times, now.Sub(last))
			last = now
		}})
		if err != nil {
			b.Fatal(err)
		}
		defer tr.Close()
		start := time.Now()
		last = start
		if _, err := tr.Run(context.Background(), steps); err != nil {
			b.Fatal(err)
		}
		total := time.Since(start)
		slices.Sort(times)
		return times[len(times)/2], total / steps
	}
	var none, bucket, noneMean, bucketMean []time.Duration
	for range b.N {
		m, a := run("train.checkpoint.every=0", "train.checkpoint.dir="+b.TempDir())
		none, noneMean = append(none, m), append(noneMean, a)
		m, a = run("train.checkpoint.every=20", "train.checkpoint.async=1", "train.checkpoint.dir="+s3test.URL("bench"))
		bucket, bucketMean = append(bucket, m), append(bucketMean, a)
	}
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2]) / 1e6
	}
	b.ReportMetric(med(none), "ms/step-none")
	b.ReportMetric(med(bucket), "ms/step-bucket")
	b.ReportMetric(100*(med(bucket)/med(none)-1), "%overhead-median")
	b.ReportMetric(100*(med(bucketMean)/med(noneMean)-1), "%overhead-mean")
}
