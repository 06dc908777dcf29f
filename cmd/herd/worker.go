package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/worker"

	"github.com/herdml/herd/internal/gpu"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/devserver"
)

func newWorkerCmd() *cobra.Command {
	var tf temporalFlags
	c := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker: trains the segments of runs on its task queue",
		Long: "Run a worker that trains TrainSegment activities (and runs TrainRun workflow code) from\n" +
			"--queue. Ctrl-C or SIGTERM stops it gracefully: a segment in flight checkpoints the step it is\n" +
			"on first, and another worker continues from there.",
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			addr := tf.addr
			if addr == "" {
				addr = devserver.RunningAddr(tf.stateDir)
			}
			if addr == "" {
				return usererr.New("--temporal", "no server to work for; pass --temporal ADDR (or set HERD_TEMPORAL), or start `herd server`")
			}
			cl, err := workflows.Dial(addr, tf.namespace)
			if err != nil {
				return err
			}
			defer cl.Close()
			acts := &workflows.Activities{Identity: workflows.Identity(tf.queue)}
			out := c.ErrOrStderr()
			fmt.Fprintf(out, "worker %s on %s, queue %s\n", acts.Identity, addr, tf.queue)
			switch h, err := gpu.List(); {
			case errors.Is(err, gpu.ErrNoDriver):
				fmt.Fprintln(out, "devices: CPU only (no NVIDIA driver)")
			case err != nil:
				fmt.Fprintf(out, "devices: %v\n", err)
			default:
				for _, d := range h.Devices {
					fmt.Fprintf(out, "device %d: %s, %.1f GiB\n", d.Index, d.Name, float64(d.MemoryTotal)/(1<<30))
				}
			}
			return workflows.NewWorker(cl, tf.queue, acts).Run(worker.InterruptCh())
		},
	}
	tf.register(c)
	return c
}
