package config

import (
	"strings"
	"testing"

	"github.com/herdml/herd/trainer/model"
)

// The MetaP rules read two facts from tensor names (a tensor under "layers." is inside a
// residual block; "*.attn.wo" and "*.w2" are branch outputs). This checks them against the
// real model.NewLayout of the tiny preset: 4 layers, MoE with a shared expert on layers 1
// and 3, 2x wider and 4x deeper than the proxy.
func TestMetaPTableFollowsTheLayout(t *testing.T) {
	run, err := Parse("run.yaml", []byte(`
model: {preset: tiny}
data: {synthetic: true}
train: {steps: 100, global_batch: 4, micro_batch: 4, optim: {lr: 1.0e-3, eps: 1.0e-8, weight_decay: 0.1}}
metap: {mode: metap, base: {d_model: 64, n_layers: 1, batch_tokens: 1024, train_tokens: 102400}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := run.MetaPShape()
	if s.BatchTokens != 4*256 || s.TrainTokens != 100*4*256 || s.DModel != 128 || s.NLayers != 4 || s.ExpertHidden != 256 {
		t.Fatalf("target shape %+v", s)
	}
	tab, err := run.MetaPTable()
	if err != nil {
		t.Fatal(err)
	}
	lay := model.NewLayout(run.Model)
	if len(tab.Entries) != len(lay.Tensors) {
		t.Fatalf("%d entries for %d tensors", len(tab.Entries), len(lay.Tensors))
	}
	count := map[float64]int{}
	inBlock := 0
	for i, e := range tab.Entries {
		if e.Name != lay.Tensors[i].Name || e.Class != lay.Tensors[i].Class {
			t.Fatalf("entry %d is %s (%s), layout has %s", i, e.Name, e.Class, lay.Tensors[i].Name)
		}
		count[e.Mult]++
		// eps: ε/m everywhere (m = 2), and × (L/L_base)^-1 = 1/4 inside blocks.
		want := 1e-8 / 2
		if strings.HasPrefix(e.Name, "layers.") {
			want /= 4
			inBlock++
		}
		if d := e.Eps/want - 1; d > 1e-12 || d < -1e-12 {
			t.Errorf("%s: eps %g, want %g", e.Name, e.Eps, want)
		}
	}
	// Branch outputs × 1/4: wo in each of 4 layers, the dense w2 of layers 0 and 2, and the
	// routed and shared experts' w2 of layers 1 and 3. Width 1/m = 1/2: LM head and 2 routers.
	if count[0.25] != 4+2+2*2 || count[0.5] != 1+2 || count[1] != len(lay.Tensors)-13 {
		t.Errorf("multipliers %v, want 10 × 0.25, 3 × 0.5, the rest 1", count)
	}
	if inBlock != len(lay.Tensors)-3 { // all but the embedding, the final norm and the LM head
		t.Errorf("%d tensors read as inside a block, want %d", inBlock, len(lay.Tensors)-3)
	}
}
