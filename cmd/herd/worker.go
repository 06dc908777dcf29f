package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/gpu"
	"github.com/herdml/herd/internal/preempt"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/collective"
	"github.com/herdml/herd/workflows"
	"github.com/herdml/herd/workflows/client"
	"github.com/herdml/herd/workflows/devserver"
)

func newWorkerCmd() *cobra.Command {
	var (
		tf                temporalFlags
		ranks             int
		segments          int
		listen            string
		certFile, keyFile string
		caFile            string
		collectiveTimeout time.Duration
		mf                metricsFlag
		grace             graceFlag
	)
	c := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker: trains the segments of runs on its task queue",
		Long: "Run a worker that trains TrainSegment activities (and runs TrainRun workflow code) from\n" +
			"--queue. SIGTERM or Ctrl-C stops it gracefully: a segment in flight finishes its step,\n" +
			"checkpoints it and the worker exits 0, saying where each run stopped; another worker continues\n" +
			"from there. Past --grace, or on a second signal, it exits 1 at once, and the segment is retried\n" +
			"from the run's newest checkpoint before it.\n\n" +
			"--ranks K lets it take K ranks of data-parallel runs (parallel.data > 1) at once, each with a\n" +
			"collective listener on --listen. A --listen other than loopback needs --collective-cert,\n" +
			"--collective-key, --collective-ca and a token shared by every worker in $HERD_COLLECTIVE_TOKEN.\n" +
			"(--tls-cert, --tls-key and --tls-ca are the Temporal connection's, as for every command.)",
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := grace.check(); err != nil {
				return err
			}
			coll, err := collectiveOptions(certFile, keyFile, caFile)
			if err != nil {
				return err
			}
			if ranks > 0 && coll.TLS == nil && !collective.Loopback(listen) {
				return usererr.New("--listen "+listen, "not loopback, and the ranks' collective would take connections from other hosts in clear; "+
					"give --collective-cert, --collective-key, --collective-ca and $HERD_COLLECTIVE_TOKEN (the same on every worker), or listen on 127.0.0.1")
			}
			addr := tf.addr
			if addr == "" {
				addr = devserver.RunningAddr(tf.stateDir)
			}
			if addr == "" {
				return usererr.New("--temporal", "no server to work for; pass --temporal ADDR (or set HERD_TEMPORAL), or start `herd server`")
			}
			cl, err := client.Dial(addr, tf.namespace, tf.auth.auth())
			if err != nil {
				return err
			}
			defer cl.Close()
			if ranks < 0 {
				return usererr.New("--ranks", "%d ranks; give 0 (take no ranks) or more", ranks)
			}
			if segments < 1 {
				return usererr.New("--segments", "%d segments; give 1 or more", segments)
			}
			coll.Timeout = collectiveTimeout
			rec, stopMetrics, err := mf.start(c.ErrOrStderr())
			if err != nil {
				return err
			}
			defer stopMetrics()
			out := c.ErrOrStderr()
			stop := grace.watch(c, func() string {
				return "a segment in flight is retried from its run's newest checkpoint on another worker"
			})
			defer stop.Done()
			acts := &workflows.Activities{Identity: workflows.Identity(tf.queue), Ranks: ranks, Segments: segments, Listen: listen, Collective: coll, Metrics: rec,
				BeforeStep: beforeStep,
				Stopped: func(run string, res workflows.SegmentResult) {
					fmt.Fprintf(out, "%s: stopped by %s at step %d, checkpoint %s; another worker of queue %s continues it from there\n",
						run, preempt.Name(stop.Signal()), res.Step, filepath.Join(res.Dir, res.Checkpoint), tf.queue)
				}}
			fmt.Fprintf(out, "worker %s on %s, queue %s, %d rank slot(s) listening on %s\n", acts.Identity, addr, tf.queue, ranks, listen)
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
			// The first signal stops the worker: its segments checkpoint the step they are on.
			interrupt := make(chan any)
			go func() { <-stop.Context().Done(); close(interrupt) }()
			if err := workflows.NewWorker(cl, tf.queue, acts).Run(interrupt); err != nil {
				return err
			}
			stop.Done()
			fmt.Fprintf(out, "worker %s stopped\n", acts.Identity)
			return nil
		},
	}
	tf.register(c)
	mf.register(c)
	grace.register(c)
	c.Flags().IntVar(&segments, "segments", 1, "one-rank segments (runs, sweep trials) trained at once; more than 1 pays for models too small to use every core")
	c.Flags().IntVar(&ranks, "ranks", 1, "ranks of data-parallel runs this worker takes at once (0 = none)")
	c.Flags().StringVar(&listen, "listen", "127.0.0.1", "host or IP the ranks' collective listeners bind (other hosts must reach it)")
	c.Flags().StringVar(&certFile, "collective-cert", "", "PEM certificate of this worker's collective listeners and dials")
	c.Flags().StringVar(&keyFile, "collective-key", "", "PEM private key of --collective-cert")
	c.Flags().StringVar(&caFile, "collective-ca", "", "PEM CA that signed every worker's --collective-cert")
	c.Flags().DurationVar(&collectiveTimeout, "collective-timeout", collective.DefaultTimeout, "deadline of every collective call: a peer silent this long fails the group")
	return c
}

// collectiveOptions is the TLS of the ranks' collective groups, from the certificate
// flags and $HERD_COLLECTIVE_TOKEN: all or nothing, since TLS without the shared token
// (or the reverse) would not be allowed to leave loopback anyway.
func collectiveOptions(certFile, keyFile, caFile string) (collective.Options, error) {
	token := os.Getenv("HERD_COLLECTIVE_TOKEN")
	if certFile == "" && keyFile == "" && caFile == "" && token == "" {
		return collective.Options{}, nil
	}
	if certFile == "" || keyFile == "" || caFile == "" || token == "" {
		return collective.Options{}, usererr.New("--collective-cert/--collective-key/--collective-ca/$HERD_COLLECTIVE_TOKEN",
			"give all four for ranks across hosts, or none for loopback only")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return collective.Options{}, usererr.New("--collective-cert", "%v", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return collective.Options{}, usererr.New("--collective-ca", "%v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return collective.Options{}, usererr.New("--collective-ca "+caFile, "no PEM certificate in it")
	}
	return collective.Options{Token: token, TLS: &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}}, nil
}
