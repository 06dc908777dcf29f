package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/metrics"
)

// metricsFlag is --metrics ADDR of the commands that train: serve Prometheus metrics of
// every step this process trains (trainer/metrics) at http://ADDR/metrics.
type metricsFlag struct{ addr string }

func (m *metricsFlag) register(c *cobra.Command) {
	c.Flags().StringVar(&m.addr, "metrics", "", "serve Prometheus metrics of the steps this process trains at http://ADDR/metrics (e.g. 127.0.0.1:9400)")
}

// start serves the metrics when --metrics was given, and says where on out. Without it,
// the recorder is nil (metrics off) and stop does nothing.
func (m *metricsFlag) start(out io.Writer) (rec *metrics.Recorder, stop func(), err error) {
	if m.addr == "" {
		return nil, func() {}, nil
	}
	rec = metrics.New()
	addr, stop, err := rec.Serve(m.addr)
	if err != nil {
		return nil, nil, usererr.New("--metrics", "%v; give HOST:PORT, e.g. 127.0.0.1:9400", err)
	}
	fmt.Fprintf(out, "metrics at http://%s/metrics\n", addr)
	return rec, stop, nil
}
