package metap

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// layout lists the tensors of a small MoE model with the names and shapes model.NewLayout
// gives them: layer 0 dense, layer 1 MoE with a shared expert. V vocab, C d_model,
// F ffn hidden, E experts, G expert hidden; heads of width C/H.
func layout(V, C, F, E, G int) []Tensor {
	ts := []Tensor{{"tok_embeddings.weight", []int{V, C}, Embedding}, {"patch_proj.weight", []int{C, 48}, Patch}}
	for i := range 2 {
		l := func(s string) string { return fmt.Sprintf("layers.%d.%s", i, s) }
		ts = append(ts,
			Tensor{l("attn_norm.weight"), []int{C}, Gain},
			Tensor{l("attn.wq"), []int{C, C}, Hidden},
			Tensor{l("attn.wk"), []int{C / 2, C}, Hidden},
			Tensor{l("attn.wv"), []int{C / 2, C}, Hidden},
			Tensor{l("attn.wo"), []int{C, C}, Hidden},
			Tensor{l("ffn_norm.weight"), []int{C}, Gain})
		if i == 0 {
			ts = append(ts,
				Tensor{l("ffn.w1"), []int{F, C}, Hidden},
				Tensor{l("ffn.w3"), []int{F, C}, Hidden},
				Tensor{l("ffn.w2"), []int{C, F}, Hidden})
			continue
		}
		ts = append(ts,
			Tensor{l("moe.router"), []int{E, C}, Router},
			Tensor{l("moe.experts.w1"), []int{E, G, C}, Expert},
			Tensor{l("moe.experts.w3"), []int{E, G, C}, Expert},
			Tensor{l("moe.experts.w2"), []int{E, C, G}, Expert},
			Tensor{l("moe.shared.w1"), []int{G, C}, Expert},
			Tensor{l("moe.shared.w3"), []int{G, C}, Expert},
			Tensor{l("moe.shared.w2"), []int{C, G}, Expert})
	}
	return append(ts, Tensor{"norm.weight", []int{C}, Gain}, Tensor{"output.weight", []int{V, C}, Readout})
}

var (
	hp     = Hyper{LR: 3e-3, InitStd: 0.02, WeightDecay: 0.1, Eps: 1e-8}
	target = Shape{DModel: 256, NLayers: 8, NHeads: 8, FFNHidden: 768, ExpertHidden: 512, Experts: 4,
		BatchTokens: 16384, TrainTokens: 64e6}
)

func config(mode string) Config {
	c := DefaultConfig()
	c.Mode = mode
	c.Base = Base{DModel: 64, NLayers: 2, BatchTokens: 4096, TrainTokens: 4e6}
	return c
}

func TestSPIsTheBaseValues(t *testing.T) {
	tensors := layout(256, 256, 768, 4, 512)
	tab, err := Plan(config("sp"), Shape{}, target, hp, tensors)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Mode != "sp" || tab.AttnScale != 0 || len(tab.Entries) != len(tensors) {
		t.Fatalf("mode %q, attn scale %g, %d entries; want sp, 0 (model default), %d", tab.Mode, tab.AttnScale, len(tab.Entries), len(tensors))
	}
	for i, e := range tab.Entries {
		want := Entry{Tensor: tensors[i], InitStd: 0.02, LR: 3e-3, WeightDecay: 0.1, Eps: 1e-8, Mult: 1}
		if e.Class == Gain {
			want.InitStd, want.WeightDecay = 0, 0 // gains start at 1 and never decay
		}
		if !equalEntry(e, want) {
			t.Errorf("%s: got %+v, want %+v", e.Name, e, want)
		}
	}
}

func TestOverridesMultiplyInOrder(t *testing.T) {
	cfg := config("sp")
	cfg.Overrides = []Override{
		{Match: "layers.*.attn.*", LRMult: 0.5},
		{Match: "*.w2", LRMult: 0.25, InitMult: 2}, // `*` crosses dots: matches every w2 at any depth
		{Match: "layers.1.attn.wo", InitMult: 3},
	}
	tab, err := Plan(cfg, Shape{}, target, hp, layout(256, 256, 768, 4, 512))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]float64{ // name -> {lr, init std}
		"layers.0.attn.wq":          {3e-3 * 0.5, 0.02},
		"layers.1.attn.wo":          {3e-3 * 0.5, 0.02 * 3},
		"layers.0.attn_norm.weight": {3e-3, 0}, // attn_norm is not under attn.
		"layers.0.ffn.w2":           {3e-3 * 0.25, 0.02 * 2},
		"layers.1.moe.experts.w2":   {3e-3 * 0.25, 0.02 * 2},
		"layers.1.moe.shared.w2":    {3e-3 * 0.25, 0.02 * 2},
		"layers.1.moe.shared.w1":    {3e-3, 0.02},
		"output.weight":             {3e-3, 0.02},
	}
	seen := 0
	for _, e := range tab.Entries {
		w, ok := want[e.Name]
		if !ok {
			continue
		}
		seen++
		if !close(e.LR, w[0]) || !close(e.InitStd, w[1]) {
			t.Errorf("%s: lr %g init %g, want %g %g", e.Name, e.LR, e.InitStd, w[0], w[1])
		}
	}
	if seen != len(want) {
		t.Fatalf("checked %d tensors, want %d", seen, len(want))
	}
}

func TestHashChangesWithEveryValue(t *testing.T) {
	tab, err := Plan(config("sp"), Shape{}, target, hp, layout(256, 256, 768, 4, 512))
	if err != nil {
		t.Fatal(err)
	}
	h0 := tab.Hash()
	if len(h0) != 64 {
		t.Fatalf("hash %q is not hex sha256", h0)
	}
	clone := func() Table {
		c := tab
		c.Entries = append([]Entry(nil), tab.Entries...)
		for i := range c.Entries {
			c.Entries[i].Shape = append([]int(nil), tab.Entries[i].Shape...)
		}
		return c
	}
	if clone().Hash() != h0 {
		t.Fatal("equal tables hash differently")
	}
	edits := map[string]func(*Table){
		"mode":       func(t *Table) { t.Mode = "mup" },
		"attn scale": func(t *Table) { t.AttnScale = 0.125 },
		"name":       func(t *Table) { t.Entries[3].Name = "layers.0.attn.wk" },
		"shape":      func(t *Table) { t.Entries[3].Shape[0]++ },
		"class":      func(t *Table) { t.Entries[3].Class = Expert },
		"init std":   func(t *Table) { t.Entries[3].InitStd = math.Nextafter(t.Entries[3].InitStd, 1) },
		"lr":         func(t *Table) { t.Entries[4].LR *= 1.5 },
		"wd":         func(t *Table) { t.Entries[5].WeightDecay = 0 },
		"eps":        func(t *Table) { t.Entries[6].Eps *= 2 },
		"mult":       func(t *Table) { t.Entries[7].Mult = 0.5 },
		"dropped":    func(t *Table) { t.Entries = t.Entries[:len(t.Entries)-1] },
		"swapped": func(t *Table) {
			t.Entries[3], t.Entries[4] = t.Entries[4], t.Entries[3]
		},
	}
	seen := map[string]string{h0: "original"}
	for name, edit := range edits {
		c := clone()
		edit(&c)
		h := c.Hash()
		if prev, dup := seen[h]; dup {
			t.Errorf("edit %q hashes like %s", name, prev)
		}
		seen[h] = name
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	cases := []struct {
		key  string
		edit func(*Config)
	}{
		{"metap.mode", func(c *Config) { c.Mode = "ntk" }},
		{"metap.mode", func(c *Config) { c.Mode = "" }},
		{"metap.base.d_model", func(c *Config) { c.Base.DModel = -64 }},
		{"metap.base.n_layers", func(c *Config) { c.Base.NLayers = -1 }},
		{"metap.base.batch_tokens", func(c *Config) { c.Base.BatchTokens = -4096 }},
		{"metap.base.train_tokens", func(c *Config) { c.Base.TrainTokens = math.NaN() }},
		{"metap.init_std", func(c *Config) { c.InitStd = 0 }},
		{"metap.depth_alpha", func(c *Config) { c.DepthAlpha = 0.4 }},
		{"metap.depth_alpha", func(c *Config) { c.DepthAlpha = 1.5 }},
		{"metap.horizon_exponent", func(c *Config) { c.HorizonExponent = -0.1 }},
		{"metap.overrides[1].match", func(c *Config) { c.Overrides = []Override{{Match: "*"}, {Match: "layers.[0"}} }},
		{"metap.overrides[0].match", func(c *Config) { c.Overrides = []Override{{Match: ""}} }},
		{"metap.overrides[0].lr_mult", func(c *Config) { c.Overrides = []Override{{Match: "*", LRMult: -1}} }},
		{"metap.overrides[0].init_mult", func(c *Config) { c.Overrides = []Override{{Match: "*", InitMult: math.Inf(1)}} }},
		{"metap.overrides[0].match", func(c *Config) { c.Overrides = []Override{{Match: "layers.*.attention.*"}} }}, // matches nothing
	}
	for _, c := range cases {
		cfg := config("sp")
		c.edit(&cfg)
		_, err := Plan(cfg, Shape{}, target, hp, layout(256, 256, 768, 4, 512))
		var u *usererr.Error
		if !errors.As(err, &u) || u.Where != c.key {
			t.Errorf("want a user error at %s, got %v", c.key, err)
			continue
		}
		if !strings.Contains(u.What, "must") && !strings.Contains(u.What, "allowed") && !strings.Contains(u.What, "want") &&
			!strings.Contains(u.What, "names look like") {
			t.Errorf("%s: message %q does not say what is allowed", c.key, u.What)
		}
	}
}

func equalEntry(a, b Entry) bool {
	if a.Name != b.Name || a.Class != b.Class || fmt.Sprint(a.Shape) != fmt.Sprint(b.Shape) {
		return false
	}
	return a.InitStd == b.InitStd && a.LR == b.LR && a.WeightDecay == b.WeightDecay && a.Eps == b.Eps && a.Mult == b.Mult
}

// close compares values computed in a different order: equal to 1e-12 relative.
func close(got, want float64) bool {
	return got == want || math.Abs(got-want) <= 1e-12*math.Abs(want)
}
