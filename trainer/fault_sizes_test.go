package trainer

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/sysmem"
	"github.com/herdml/herd/internal/usererr"
)

// withGoMemLimit sets the Go runtime's memory limit (what GOMEMLIMIT sets) for the test.
func withGoMemLimit(t *testing.T, n int64) {
	old := debug.SetMemoryLimit(n)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
}

// TestNewRefusesWhatDoesNotFit: New compares the plan's memory with what the process may
// use before allocating, counting every rank it trains in this process, and says so in
// a user error with the estimate, the limit and its source.
func TestNewRefusesWhatDoesNotFit(t *testing.T) {
	cfg := microConfig(t, "train.global_batch=8", "train.micro_batch=4", "parallel.data=2")
	per := cfg.Plan().Memory.Total
	withGoMemLimit(t, per*3/2) // one rank fits, two do not

	_, err := New(cfg, Options{})
	if !usererr.Is(err) || !strings.Contains(err.Error(), "2 ranks × "+sysmem.Format(per)) ||
		!strings.Contains(err.Error(), sysmem.Format(per*3/2)) || !strings.Contains(err.Error(), "GOMEMLIMIT") {
		t.Fatalf("two ranks in one process: %v; want a user error naming 2 ranks × %s and the %s GOMEMLIMIT",
			err, sysmem.Format(per), sysmem.Format(per*3/2))
	}
	one := microConfig(t)
	if one.Parallel.Data != 1 || one.Plan().Memory.Total != per {
		t.Fatalf("one rank's plan differs: %+v", one.Plan().Memory)
	}
	newTrainer(t, one, Options{}).Close()

	// d_model 65536 needs hundreds of GiB: refused at once, nothing allocated.
	big := microConfig(t, "model.d_model=65536", "model.n_heads=64", "model.n_kv_heads=8")
	if _, err := New(big, Options{}); !usererr.Is(err) || !strings.Contains(err.Error(), "GiB of memory per rank") {
		t.Fatalf("d_model 65536: %v", err)
	}
}
