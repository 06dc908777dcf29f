package workflows_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herdml/herd/trainer/metrics"

	. "github.com/herdml/herd/workflows"
	. "github.com/herdml/herd/workflows/client"
)

// A worker with a metrics recorder reports every step its segments train, under the
// run's name: after the run, the step gauge, the token counter and the checkpoint
// counter hold what the run did.
func TestSegmentMetrics(t *testing.T) {
	srv := startServer(t)
	c := dialTest(t, srv.Addr())
	rec := metrics.New()
	w := NewWorker(c, "metrics", hooked(&Activities{Metrics: rec}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	cfg := microConfig(t, "metered", "train.steps=6", "train.checkpoint.every=3")
	if _, err := Submit(t.Context(), c, "metrics", calm(input(cfg))); err != nil {
		t.Fatal(err)
	}
	if p := follow(t, c, "metered"); p.State != StateCompleted || p.Step != 6 {
		t.Fatalf("run ended %+v", p)
	}
	resp := httptest.NewRecorder()
	rec.Handler().ServeHTTP(resp, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(resp.Body)
	tokens := 6 * cfg.Train.GlobalBatch * cfg.Model.SeqLen
	for _, want := range []string{
		`herd_step{rank="0",run="metered"} 6`,
		fmt.Sprintf(`herd_tokens_total{rank="0",run="metered"} %d`, tokens),
		`herd_checkpoints_total{rank="0",run="metered"} 2`,
		`herd_step_seconds_count{rank="0",run="metered"} 6`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}
