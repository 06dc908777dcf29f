package config

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/model"
)

const sizesBase = "name: sizes\nmodel: {preset: tiny}\ndata: {synthetic: true}\n"

// TestAbsurdSizesAreUserErrors: a size whose products would wrap the plan's integers, or
// that no slice could hold, is refused by validation, naming the key.
func TestAbsurdSizesAreUserErrors(t *testing.T) {
	for _, c := range []struct {
		sets []string
		key  string // where the error points
		want string // part of its message
	}{
		{[]string{"model.d_model=1000000000"}, "model.d_model", "more than herd can plan for"},
		{[]string{"model.vocab_size=1099511627776"}, "model.vocab_size", "at most 2147483647"},
		{[]string{"model.seq_len=4294967296"}, "model.seq_len", "at most 2147483647"},
		{[]string{"model.n_layers=1000000"}, "model.n_layers", "at most 4096"},
		{[]string{"model.moe.experts=2147483647", "model.moe.expert_hidden=2147483647"}, "model.moe.experts", "more than herd can plan for"},
		{[]string{"model.vision.patch=100000", "model.vision.channels=3"}, "model.vision", "at most 4096"},
		{[]string{"model.seq_len=2000000000", "train.micro_batch=2000000000", "train.global_batch=2000000000"}, "train.micro_batch", "more than herd can plan for"},
		{[]string{"train.global_batch=4294967296"}, "train.global_batch", "at most 2147483647"},
		{[]string{"train.fp8.history=1000000000"}, "train.fp8.history", "at most 65536"},
	} {
		_, err := Parse("run.yaml", []byte(sizesBase), c.sets)
		var u *usererr.Error
		if !errors.As(err, &u) || !strings.HasSuffix(u.Where, c.key) || !strings.Contains(u.What, c.want) {
			t.Errorf("--set %v: got %v, want a user error at %s saying %q", c.sets, err, c.key, c.want)
		}
	}
}

// TestValidPlansNeverWrap: every config validation lets through, however large, has a
// plan whose integer figures are the exact (float64) counts: positive, never wrapped.
func TestValidPlansNeverWrap(t *testing.T) {
	for _, sets := range [][]string{
		{"model.preset=scout"},
		{"model.preset=maverick", "model.seq_len=2147483647", "train.micro_batch=64", "train.global_batch=64"},
		{"model.vocab_size=2147483647"},
		{"model.d_model=65536", "model.n_heads=64", "model.n_kv_heads=8"},
		{"model.d_model=268435456", "model.n_layers=1", "model.vocab_size=16"}, // 2^62 / 16 bytes of parameters is about 2^58
		{"model.seq_len=100000000"},
		{"model.n_layers=4096"},
	} {
		r, err := Parse("run.yaml", []byte(sizesBase), sets)
		if err != nil {
			t.Errorf("--set %v: %v", sets, err)
			continue
		}
		p := r.Plan()
		params := model.ParamCount(r.Model)
		bytes := model.ParamBytes*params + model.ActivationBytes*model.ActivationValues(r.Model, r.Train.MicroBatch)
		m := p.Memory
		if p.Params <= 0 || m.Total <= 0 || m.Activations <= 0 || p.TokensPerStep <= 0 ||
			!near(float64(p.Params), params) || !near(float64(m.Total), bytes) {
			t.Errorf("--set %v: plan %d parameters, %d bytes; counted in float64: %.6g, %.6g", sets, p.Params, m.Total, params, bytes)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*b }
