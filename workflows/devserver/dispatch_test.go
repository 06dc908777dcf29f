package devserver

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

func noop(context.Context) error { return nil }

// chain runs n no-op activities one after another: each costs one full dispatch round trip
// (workflow task -> schedule -> transfer queue -> matching -> worker -> completion -> next
// workflow task), which is what the queue-processor tuning is about.
func chain(ctx workflow.Context, n int) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	for range n {
		if err := workflow.ExecuteActivity(ctx, noop).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkDispatch reports the round trip of a no-op activity on the embedded server,
// with Temporal's default dynamic config and with Tuning, on the WAL-mode file and in memory.
func BenchmarkDispatch(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"default/file", Options{Untuned: true}},
		{"tuned/file", Options{}},
		{"partitions-only/file", Options{Untuned: true, DynamicConfig: map[string]any{
			"matching.numTaskqueueReadPartitions": 1, "matching.numTaskqueueWritePartitions": 1}}},
		{"pollrps-only/file", Options{DynamicConfig: map[string]any{
			"matching.numTaskqueueReadPartitions": 4, "matching.numTaskqueueWritePartitions": 4}}},
		{"default/memory", Options{Untuned: true, InMemory: true}},
		{"tuned/memory", Options{InMemory: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := bc.opts
			opts.StateDir = b.TempDir()
			s, err := Start(opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Stop()
			c := dial(b, s)
			w := worker.New(c, "bench", worker.Options{})
			w.RegisterWorkflow(chain)
			w.RegisterActivity(noop)
			if err := w.Start(); err != nil {
				b.Fatal(err)
			}
			defer w.Stop()
			run := func(n int) {
				r, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{TaskQueue: "bench"}, chain, n)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Get(context.Background(), nil); err != nil {
					b.Fatal(err)
				}
			}
			run(3) // warm caches and pollers
			b.ResetTimer()
			start := time.Now()
			run(b.N)
			b.ReportMetric(float64(time.Since(start).Microseconds())/1e3/float64(b.N), "ms/activity")
		})
	}
}
