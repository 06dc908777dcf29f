package metrics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herdml/herd/trainer"
)

// Steps observed by two ranks of one run are served over HTTP, each under its labels:
// gauges hold the last step's values, counters add up, the histogram counts every step.
func TestServeAfterSteps(t *testing.T) {
	r := New()
	addr, stop, err := r.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for rank := range 2 {
		r.Observe("demo", rank, trainer.Stats{Step: 1, Steps: 10, Loss: 5.5, LR: 1e-3, Tokens: 2048, TokensPerS: 4096})
		r.Observe("demo", rank, trainer.Stats{Step: 2, Steps: 10, Loss: 4.25 + float64(rank), LR: 2e-3, GradNorm: 0.5,
			Tokens: 2048, TokensPerS: 1024, Checkpoint: "step-00000002",
			Eval:       &trainer.EvalResult{Loss: 4.5, BitsPerByte: 6.5},
			ExpertLoad: [][]float64{{0.75, 0.25}}})
	}
	want := `
# HELP herd_loss Mean cross-entropy of the last step's micro-batches, in nats per token.
# TYPE herd_loss gauge
herd_loss{rank="0",run="demo"} 4.25
herd_loss{rank="1",run="demo"} 5.25
# HELP herd_tokens_total Tokens trained on by this process since it started.
# TYPE herd_tokens_total counter
herd_tokens_total{rank="0",run="demo"} 4096
herd_tokens_total{rank="1",run="demo"} 4096
# HELP herd_checkpoint_step Step of the newest checkpoint this process committed.
# TYPE herd_checkpoint_step gauge
herd_checkpoint_step{rank="0",run="demo"} 2
herd_checkpoint_step{rank="1",run="demo"} 2
# HELP herd_eval_bits_per_byte Bits per byte on held-out data at the last evaluation.
# TYPE herd_eval_bits_per_byte gauge
herd_eval_bits_per_byte{rank="0",run="demo"} 6.5
herd_eval_bits_per_byte{rank="1",run="demo"} 6.5
# HELP herd_expert_load Share of one MoE layer's routed slots that went to an expert in the last step (1/experts when balanced).
# TYPE herd_expert_load gauge
herd_expert_load{expert="0",layer="0",rank="0",run="demo"} 0.75
herd_expert_load{expert="0",layer="0",rank="1",run="demo"} 0.75
herd_expert_load{expert="1",layer="0",rank="0",run="demo"} 0.25
herd_expert_load{expert="1",layer="0",rank="1",run="demo"} 0.25
`
	url := fmt.Sprintf("http://%s/metrics", addr)
	if err := testutil.ScrapeAndCompare(url, strings.NewReader(want),
		"herd_loss", "herd_tokens_total", "herd_checkpoint_step", "herd_eval_bits_per_byte", "herd_expert_load"); err != nil {
		t.Fatal(err)
	}
	// Step times are Tokens/TokensPerS: 0.5 s and 2 s per rank.
	if n := testutil.CollectAndCount(r.stepSeconds, "herd_step_seconds"); n != 2 {
		t.Fatalf("step_seconds has %d series, want one per rank", n)
	}
	if got := testutil.ToFloat64(r.checkpoints.WithLabelValues("demo", "1")); got != 1 {
		t.Fatalf("checkpoints_total = %v, want 1", got)
	}
}

func TestServeBadAddress(t *testing.T) {
	_, _, err := New().Serve("not-an-address")
	if err == nil || !strings.Contains(err.Error(), `"not-an-address"`) {
		t.Fatalf("got %v, want an error naming the address", err)
	}
}
