package metap

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// TestEachAblationChangesOnlyItsRule plans the MoE layout 4× wider, 4× deeper (α = 0.5,
// so that the block LR factor is not 1), with a 4× batch and 16× the tokens and a head dim
// half the proxy's, once with every rule and once per ablation, and checks that the
// ablation changes exactly the values its rule sets, to the base value.
func TestEachAblationChangesOnlyItsRule(t *testing.T) {
	tensors := layout(256, 256, 768, 4, 512)
	base := Shape{NHeads: 2} // the proxy's head dim: 64/2 = 32
	tgt := target
	tgt.NHeads = 16 // head dim 16: μP's attention scale is √32/16, not the model default
	plan := func(ablate ...string) Table {
		t.Helper()
		c := config("metap")
		c.DepthAlpha = 0.5
		c.Ablate = ablate
		tab, err := Plan(c, base, tgt, hp, tensors)
		if err != nil {
			t.Fatal(err)
		}
		return tab
	}
	full := plan()
	if full.AttnScale != math.Sqrt(32)/16 {
		t.Fatalf("attention scale %g, want √32/16", full.AttnScale)
	}
	const m, depth = 4.0, 4.0 // width and depth ratios of tgt over the proxy
	inBlock := func(e Entry) bool { return strings.HasPrefix(e.Name, "layers.") }
	branchOut := func(e Entry) bool {
		return inBlock(e) && (strings.HasSuffix(e.Name, ".attn.wo") || strings.HasSuffix(e.Name, ".w2"))
	}
	hidden := func(e Entry) bool { return e.Class == Hidden || e.Class == Expert }
	// each maps a full entry to the one the ablation must give.
	cases := map[string]func(e *Entry){
		"hidden_init": func(e *Entry) {
			if hidden(*e) {
				e.InitStd = hp.InitStd
			}
		},
		"hidden_lr": func(e *Entry) {
			if hidden(*e) {
				e.LR *= m
			}
		},
		"readout_mult": func(e *Entry) {
			if e.Class == Readout {
				e.Mult = 1
			}
		},
		"router_mult": func(e *Entry) {
			if e.Class == Router {
				e.Mult = 1
			}
		},
		"attn_scale": func(*Entry) {},
		"weight_decay": func(e *Entry) {
			if hidden(*e) {
				e.WeightDecay = hp.WeightDecay
			}
		},
		"eps": func(e *Entry) { e.Eps = hp.Eps },
		"depth": func(e *Entry) {
			if branchOut(*e) {
				e.Mult = 1
			}
			if inBlock(*e) {
				e.LR /= math.Pow(depth, -0.5)
				e.Eps /= math.Pow(depth, -0.5)
			}
		},
		"batch_lr":   func(e *Entry) { e.LR /= math.Sqrt(4) },
		"horizon_lr": func(e *Entry) { e.LR /= math.Pow(16, -0.3) },
	}
	if len(cases) != len(Ablations) {
		t.Fatalf("%d cases for %d ablations", len(cases), len(Ablations))
	}
	for _, name := range Ablations {
		got := plan(name)
		if got.Hash() == full.Hash() {
			t.Errorf("%s: the table's hash did not change", name)
		}
		wantScale := full.AttnScale
		if name == "attn_scale" {
			wantScale = 0
		}
		if got.AttnScale != wantScale {
			t.Errorf("%s: attention scale %g, want %g", name, got.AttnScale, wantScale)
		}
		for i, e := range got.Entries {
			want := full.Entries[i]
			cases[name](&want)
			if !close(e.InitStd, want.InitStd) || !close(e.LR, want.LR) || !close(e.WeightDecay, want.WeightDecay) ||
				!close(e.Eps, want.Eps) || !close(e.Mult, want.Mult) {
				t.Errorf("%s: %s is %+v, want %+v", name, e.Name, e, want)
			}
		}
	}
}

// TestAblationsCompose checks that two ablations together are each applied, and that mup
// has the width rules' ablations.
func TestAblationsCompose(t *testing.T) {
	tensors := layout(256, 256, 768, 4, 512)
	for _, mode := range []string{"mup", "metap"} {
		c := config(mode)
		c.Ablate = []string{"hidden_init", "readout_mult"}
		tab, err := Plan(c, Shape{}, target, hp, tensors)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range tab.Entries {
			if (e.Class == Hidden || e.Class == Expert) && e.InitStd != hp.InitStd || e.Class == Readout && e.Mult != 1 {
				t.Errorf("%s: %s is %+v, want init σ and readout multiplier 1", mode, e.Name, e)
			}
		}
	}
}

func TestBadAblateNamesTheKey(t *testing.T) {
	cases := []struct {
		mode, key string
		ablate    []string
	}{
		{"metap", "metap.ablate[1]", []string{"hidden_lr", "readout"}},
		{"metap", "metap.ablate[2]", []string{"eps", "depth", "eps"}},
		{"sp", "metap.ablate", []string{"hidden_lr"}},
		{"mup", "metap.ablate[0]", []string{"weight_decay"}},
	}
	for _, c := range cases {
		cfg := config(c.mode)
		cfg.Ablate = c.ablate
		_, err := Plan(cfg, Shape{}, target, hp, layout(256, 256, 768, 4, 512))
		var u *usererr.Error
		if !errors.As(err, &u) || u.Where != c.key {
			t.Errorf("%s %v: want a user error at %s, got %v", c.mode, c.ablate, c.key, err)
		}
	}
}
