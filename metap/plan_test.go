package metap

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
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
		{"metap.input_mult", func(c *Config) { c.InputMult = -10 }},
		{"metap.input_mult", func(c *Config) { c.InputMult = math.Inf(1) }},
		{"metap.readout_mult", func(c *Config) { c.ReadoutMult = -1 }},
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

// want is one row of a hand-computed table: {init std, lr, weight decay, eps, mult}.
type want [5]float64

func checkTable(t *testing.T, tab Table, rows map[string]want) {
	t.Helper()
	if len(tab.Entries) != len(rows) {
		t.Fatalf("%d entries, want %d", len(tab.Entries), len(rows))
	}
	for _, e := range tab.Entries {
		w, ok := rows[e.Name]
		if !ok {
			t.Errorf("unexpected tensor %s", e.Name)
			continue
		}
		got := want{e.InitStd, e.LR, e.WeightDecay, e.Eps, e.Mult}
		for i, field := range []string{"init std", "lr", "weight decay", "eps", "mult"} {
			if !close(got[i], w[i]) {
				t.Errorf("%s (%s): %s %g, want %g", e.Name, e.Class, field, got[i], w[i])
			}
		}
	}
}

// rowsByPattern expands {glob: values} to every tensor name of the layout; each name must
// match exactly one pattern.
func rowsByPattern(t *testing.T, tensors []Tensor, byPattern map[string]want) map[string]want {
	t.Helper()
	rows := map[string]want{}
	for _, ten := range tensors {
		n := 0
		for p, w := range byPattern {
			if ok, _ := path.Match(p, ten.Name); ok {
				rows[ten.Name] = w
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s matches %d test patterns, want 1", ten.Name, n)
		}
	}
	return rows
}

// The target is 4x wider (d_model 64 -> 256) and 4x deeper (2 -> 8 layers) than the proxy,
// with heads, ffn and expert widths scaled like d_model (Shape{} as base).
func TestMuPTable(t *testing.T) {
	tensors := layout(256, 256, 768, 4, 512)
	tab, err := Plan(config("mup"), Shape{}, target, hp, tensors)
	if err != nil {
		t.Fatal(err)
	}
	if tab.AttnScale != 0 {
		t.Errorf("attn scale %g; head dim 32 is the proxy's, want 0 (model default)", tab.AttnScale)
	}
	const s, lr, wd, eps = 0.02, 3e-3, 0.1, 1e-8
	hidden := want{s / 2, lr / 4, wd, eps, 1} // σ/√4, η/4
	checkTable(t, tab, rowsByPattern(t, tensors, map[string]want{
		"tok_embeddings.weight":  {s, lr, wd, eps, 1},
		"patch_proj.weight":      {s, lr, wd, eps, 1},
		"layers.*.*_norm.weight": {0, lr, 0, eps, 1},
		"layers.*.attn.w?":       hidden,
		"layers.0.ffn.w?":        hidden,
		"layers.1.moe.*.w?":      hidden,
		"layers.1.moe.router":    {s, lr, wd, eps, 0.25},
		"norm.weight":            {0, lr, 0, eps, 1},
		"output.weight":          {s, lr, wd, eps, 0.25}, // init σ, multiplier 1/m
	}))
}

func TestMetaPTable(t *testing.T) {
	const s, lr, wd, eps = 0.02, 3e-3, 0.1, 1e-8
	tensors := layout(256, 256, 768, 4, 512)
	for _, alpha := range []float64{1, 0.5} {
		t.Run(fmt.Sprint("alpha=", alpha), func(t *testing.T) {
			cfg := config("metap")
			cfg.DepthAlpha = alpha
			tab, err := Plan(cfg, Shape{}, target, hp, tensors)
			if err != nil {
				t.Fatal(err)
			}
			// L/L_base = 4: branches × 4^-α, LR inside blocks × 4^(α-1), eps inside blocks × 4^-α.
			branch, depthLR := 0.25, 1.0
			if alpha == 0.5 {
				branch, depthLR = 0.5, 0.5
			}
			// batch 16384/4096 = 4 -> √4; tokens 64e6/4e6 = 16 -> 16^-0.3.
			g := 2 * math.Pow(16, -0.3)
			hidden := want{s / 2, lr / 4 * depthLR * g, wd * 4, eps / 4 * branch, 1}
			down := hidden
			down[4] = branch
			checkTable(t, tab, rowsByPattern(t, tensors, map[string]want{
				"tok_embeddings.weight":  {s, lr * g, wd, eps / 4, 1},
				"patch_proj.weight":      {s, lr * g, wd, eps / 4, 1},
				"layers.*.*_norm.weight": {0, lr * depthLR * g, 0, eps / 4 * branch, 1},
				"layers.*.attn.w[qkv]":   hidden,
				"layers.*.attn.wo":       down,
				"layers.0.ffn.w[13]":     hidden,
				"layers.0.ffn.w2":        down,
				"layers.1.moe.*.w[13]":   hidden,
				"layers.1.moe.*.w2":      down,
				"layers.1.moe.router":    {s, lr * depthLR * g, wd, eps / 4 * branch, 0.25},
				"norm.weight":            {0, lr * g, 0, eps / 4, 1},
				"output.weight":          {s, lr * g, wd, eps / 4, 0.25}, // init σ, multiplier 1/m
			}))
		})
	}
}

// A proxy given with its own heads, ffn and expert widths: each matrix scales by its own
// fan-in ratio, and attention by 1/d_head as soon as the head dim grows.
func TestMuPExplicitProxyWidths(t *testing.T) {
	const s, lr, wd, eps = 0.02, 3e-3, 0.1, 1e-8
	tensors := layout(256, 256, 768, 4, 512)
	base := Shape{NHeads: 4, FFNHidden: 384, ExpertHidden: 256} // head dim 16, ffn ×2, experts ×2
	tab, err := Plan(config("mup"), base, target, hp, tensors)
	if err != nil {
		t.Fatal(err)
	}
	if want := math.Sqrt(16) / 32; !close(tab.AttnScale, want) {
		t.Errorf("attn scale %g, want √16/32 = %g", tab.AttnScale, want)
	}
	byD := want{s / 2, lr / 4, wd, eps, 1}              // fan-in d_model: ×4
	byFFN := want{s / math.Sqrt(2), lr / 2, wd, eps, 1} // fan-in ffn_hidden or expert_hidden: ×2
	checkTable(t, tab, rowsByPattern(t, tensors, map[string]want{
		"tok_embeddings.weight":  {s, lr, wd, eps, 1},
		"patch_proj.weight":      {s, lr, wd, eps, 1},
		"layers.*.*_norm.weight": {0, lr, 0, eps, 1},
		"layers.*.attn.w?":       byD,
		"layers.0.ffn.w[13]":     byD,
		"layers.1.moe.*.w[13]":   byD,
		"layers.0.ffn.w2":        byFFN,
		"layers.1.moe.*.w2":      byFFN,
		"layers.1.moe.router":    {s, lr, wd, eps, 0.25},
		"norm.weight":            {0, lr, 0, eps, 1},
		"output.weight":          {s, lr, wd, eps, 0.25}, // init σ, multiplier 1/m
	}))
}

// On the proxy's own shape every rule is the identity: mup and metap give sp's table, so
// the proxy trains exactly as under sp.
func TestEveryModeIsSPOnTheProxy(t *testing.T) {
	proxy := Shape{DModel: 64, NLayers: 2, NHeads: 2, FFNHidden: 192, ExpertHidden: 128, Experts: 4, BatchTokens: 4096, TrainTokens: 4e6}
	tensors := layout(256, 64, 192, 4, 128)
	sp, err := Plan(config("sp"), Shape{}, proxy, hp, tensors)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"mup", "metap"} {
		tab, err := Plan(config(mode), Shape{}, proxy, hp, tensors)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range tab.Entries {
			if !equalEntry(e, sp.Entries[i]) {
				t.Errorf("%s on the proxy: %+v, sp has %+v", mode, e, sp.Entries[i])
			}
		}
		if tab.AttnScale != sp.AttnScale {
			t.Errorf("%s on the proxy: attention scale %g, sp has %g", mode, tab.AttnScale, sp.AttnScale)
		}
	}
}

// A proxy size of 0 is the target's: with an empty metap.base nothing transfers, and the
// table is the base values.
func TestEmptyBaseTransfersNothing(t *testing.T) {
	tensors := layout(256, 256, 768, 4, 512)
	cfg := config("metap")
	cfg.Base = Base{}
	tab, err := Plan(cfg, Shape{}, target, hp, tensors)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range tab.Entries {
		want := Entry{Tensor: tensors[i], InitStd: 0.02, LR: 3e-3, WeightDecay: 0.1, Eps: 1e-8, Mult: 1}
		switch e.Class {
		case Gain:
			want.InitStd, want.WeightDecay = 0, 0
		}
		if !equalEntry(e, want) {
			t.Errorf("%s: got %+v, want %+v", e.Name, e, want)
		}
	}
}

// metap.input_mult and metap.readout_mult are base values. In every mode the first is
// the forward multiplier of the embedding and the patch projection at every width and
// depth; the second is sp's readout multiplier, which mup and metap divide by m as they
// divide 1. Nothing else changes.
func TestMultipliersAreBaseValues(t *testing.T) {
	tensors := layout(256, 256, 768, 4, 512)
	for _, c := range []struct {
		name    string
		set     func(*Config)
		classes []Class
		mult    func(was float64) float64
	}{
		{"input_mult 10", func(c *Config) { c.InputMult = 10 }, []Class{Embedding, Patch}, func(float64) float64 { return 10 }},
		{"readout_mult 2", func(c *Config) { c.ReadoutMult = 2 }, []Class{Readout}, func(was float64) float64 { return 2 * was }},
	} {
		for _, mode := range Modes {
			plain, err := Plan(config(mode), Shape{}, target, hp, tensors)
			if err != nil {
				t.Fatal(err)
			}
			cfg := config(mode)
			c.set(&cfg)
			tab, err := Plan(cfg, Shape{}, target, hp, tensors)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range tab.Entries {
				want := plain.Entries[i]
				if slices.Contains(c.classes, e.Class) {
					want.Mult = c.mult(want.Mult)
				}
				if !equalEntry(e, want) {
					t.Errorf("%s, %s: %s is %+v, want %+v", mode, c.name, e.Name, e, want)
				}
			}
		}
	}
}
