package sweep

import "testing"

// The end-to-end transfer example sweeps the width experiments' proxy (d_model 64, two
// heads sharing one kv head) and transfers to a target 4x wider with the same head dim
// and GQA ratio, metap.base the proxy, the proxy's base values and its best LR: the
// narrower one-head proxy it had before could not tell init scales apart that the target
// can (docs/metap.md, "Ablations and base values", must-show 3).
func TestExampleMetaPTransferE2E(t *testing.T) {
	s, err := Load("../../examples/metap-transfer-e2e.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Trials) != 7 || s.Metric != "eval_loss" {
		t.Fatalf("%d trials, metric %s; want 7 LRs on eval_loss", len(s.Trials), s.Metric)
	}
	proxy := trialConfig(t, s, 3)
	const best = 0.0078125 // 2^-7, the proxy's best at the file's seed (docs/metap.md)
	if proxy.Train.Optim.LR != best {
		t.Fatalf("trial 3 lr %g, want %g", proxy.Train.Optim.LR, best)
	}
	target, err := s.Target([]string{"train.optim.lr=0.0078125"})
	if err != nil {
		t.Fatal(err)
	}
	p, g := proxy.Model, target.Model
	if p.DModel != 64 || p.NHeads != 2 || p.NKVHeads != 1 || g.DModel != 4*p.DModel {
		t.Fatalf("proxy %s, target %s; want d_model 64, 2 heads, 1 kv head, target 4x wider", p, g)
	}
	if g.HeadDim() != p.HeadDim() || g.NHeads/g.NKVHeads != p.NHeads/p.NKVHeads || g.FFNHidden/g.DModel != p.FFNHidden/p.DModel {
		t.Fatalf("proxy %s, target %s; want the same head dim, GQA ratio and FFN ratio", p, g)
	}
	pm, gm := proxy.MetaP, target.MetaP
	if gm.Mode != "metap" || gm.Base.DModel != p.DModel || gm.Base.NLayers != p.NLayers || target.Train.Optim.LR != best {
		t.Fatalf("target metap %+v, lr %g; want metap from the proxy at lr %g", gm, target.Train.Optim.LR, best)
	}
	if gm.InputMult != pm.InputMult || gm.ReadoutMult != pm.ReadoutMult || gm.InitStd != pm.InitStd || pm.InitStd != 0.04 {
		t.Fatalf("base values: proxy %+v, target %+v; want the proxy's (10, 4, 0.04) in both", pm, gm)
	}
	if proxy.Train.Steps != 100 || target.Train.Steps != proxy.Train.Steps {
		t.Fatalf("steps: proxy %d, target %d; want 100 each", proxy.Train.Steps, target.Train.Steps)
	}
}
