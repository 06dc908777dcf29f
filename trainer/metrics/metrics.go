// Package metrics exports training progress as Prometheus metrics, so that a run can be
// watched from Grafana or any scraper the way torchtitan's and W&B's users watch theirs:
// `herd train --metrics ADDR`, `herd worker --metrics ADDR` and `herd run --metrics ADDR`
// serve them at http://ADDR/metrics.
//
// Every series carries the run's name and the rank that reports it ("0" for `herd train`
// and one-rank runs, whose in-process data-parallel ranks report together), so that one
// scraper can watch many workers and runs. The values are those of trainer.Stats, after
// every optimizer step; nothing is sampled or estimated.
package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herdml/herd/trainer"
)

// Recorder holds the metrics of the runs in this process. It is safe for concurrent use:
// a worker's segments report from their own goroutines.
type Recorder struct {
	reg *prometheus.Registry

	step, targetSteps, loss, aux, lr, gradNorm, tokensPerS *prometheus.GaugeVec
	evalLoss, evalBPB, checkpointStep                      *prometheus.GaugeVec
	tokens, checkpoints                                    *prometheus.CounterVec
	stepSeconds                                            *prometheus.HistogramVec
	expertLoad                                             *prometheus.GaugeVec
}

// New returns a Recorder with its own registry, which also holds the Go runtime's and
// the process's collectors (memory, GC, CPU seconds, open files).
func New() *Recorder {
	reg := prometheus.NewRegistry()
	labels := []string{"run", "rank"}
	gauge := func(name, help string, extra ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "herd", Name: name, Help: help}, append(labels, extra...))
		reg.MustRegister(g)
		return g
	}
	counter := func(name, help string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "herd", Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	r := &Recorder{
		reg:            reg,
		step:           gauge("step", "Optimizer steps completed."),
		targetSteps:    gauge("target_steps", "train.steps: the step where the schedule ends."),
		loss:           gauge("loss", "Mean cross-entropy of the last step's micro-batches, in nats per token."),
		aux:            gauge("aux_loss", "MoE load-balancing loss of the last step (already times moe.aux_loss)."),
		lr:             gauge("learning_rate", "Base learning rate of the last step (train.optim.lr times the schedule; MetaP multiplies it per tensor)."),
		gradNorm:       gauge("grad_norm", "Global gradient norm of the last step, before clipping."),
		tokensPerS:     gauge("tokens_per_second", "Tokens of the last step over its wall time."),
		evalLoss:       gauge("eval_loss", "Loss on held-out data at the last evaluation, in nats per token."),
		evalBPB:        gauge("eval_bits_per_byte", "Bits per byte on held-out data at the last evaluation."),
		checkpointStep: gauge("checkpoint_step", "Step of the newest checkpoint this process committed."),
		tokens:         counter("tokens_total", "Tokens trained on by this process since it started."),
		checkpoints:    counter("checkpoints_total", "Checkpoints committed by this process since it started."),
		expertLoad:     gauge("expert_load", "Share of one MoE layer's routed slots that went to an expert in the last step (1/experts when balanced).", "layer", "expert"),
		stepSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "herd", Name: "step_seconds", Help: "Wall time of optimizer steps.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18), // 1 ms to about 2 minutes
		}, labels),
	}
	reg.MustRegister(r.stepSeconds,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Observe records one optimizer step of run, reported by rank. A nil Recorder records
// nothing, so that callers with metrics off need no checks.
func (r *Recorder) Observe(run string, rank int, st trainer.Stats) {
	if r == nil {
		return
	}
	l := prometheus.Labels{"run": run, "rank": strconv.Itoa(rank)}
	r.step.With(l).Set(float64(st.Step))
	r.targetSteps.With(l).Set(float64(st.Steps))
	r.loss.With(l).Set(st.Loss)
	r.aux.With(l).Set(st.Aux)
	r.lr.With(l).Set(st.LR)
	r.gradNorm.With(l).Set(st.GradNorm)
	r.tokensPerS.With(l).Set(st.TokensPerS)
	r.tokens.With(l).Add(float64(st.Tokens))
	if st.TokensPerS > 0 {
		r.stepSeconds.With(l).Observe(float64(st.Tokens) / st.TokensPerS)
	}
	if st.Eval != nil {
		r.evalLoss.With(l).Set(st.Eval.Loss)
		r.evalBPB.With(l).Set(st.Eval.BitsPerByte)
	}
	if st.Checkpoint != "" {
		r.checkpoints.With(l).Inc()
		r.checkpointStep.With(l).Set(float64(st.Step))
	}
	for layer, load := range st.ExpertLoad {
		for e, share := range load {
			r.expertLoad.With(prometheus.Labels{"run": run, "rank": l["rank"],
				"layer": strconv.Itoa(layer), "expert": strconv.Itoa(e)}).Set(share)
		}
	}
}

// Handler serves the metrics in Prometheus' text and protobuf formats.
func (r *Recorder) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Serve listens on addr ("127.0.0.1:9400", ":0") and serves the metrics at /metrics until
// stop is called. It returns the address it listens on. A bad address is the caller's to
// report as a user error: the error names it.
func (r *Recorder) Serve(addr string) (listening net.Addr, stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: listen on %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", r.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			lis.Close()
		}
	}()
	return lis.Addr(), func() { srv.Close() }, nil
}
