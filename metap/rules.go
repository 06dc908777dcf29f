package metap

import (
	"fmt"
	"math"
	"strings"
)

// Sources, cited by the rules below:
//
//	[TP5]       Yang et al. 2022, "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot
//	            Hyperparameter Transfer", Tables 3 and 8 (μP for Adam) and §B.1 (attention 1/d).
//	[CompleteP] Dey et al. 2025, "Don't be lazy: CompleteP enables compute-efficient deep
//	            transformers", Table 1, and its reference code (EleutherAI/nanoGPT-mup, branch
//	            completep).
//	[SDE]       Malladi et al. 2022, "On the SDEs and Scaling Rules for Adaptive Gradient
//	            Algorithms": Adam's square-root learning-rate rule for batch size.
//	[Horizon]   Bjorck et al. 2025, "Scaling Optimal LR Across Token Horizons": the best AdamW
//	            learning rate falls as a power of the training tokens, exponent about 0.3.
//	[uMuP]      Blake et al. 2024, "u-μP: The Unit-Scaled Maximal Update Parametrization".
//	[WDScale]   Wang and Aitchison 2024, "How to set AdamW's weight decay as you scale model and
//	            dataset size".
//
// Names the rules read: a tensor whose name starts with "layers." lives inside a residual
// block; a block's residual-branch output is the one named "*.attn.wo" or "*.w2" (dense,
// routed expert and shared expert down projections). These are model.NewLayout's names.

// fillBase completes the proxy shape: each of d_model, n_layers, batch_tokens and
// train_tokens that base leaves at 0 comes from the config, then, if still 0, from the
// target (no transfer along that axis). Heads, FFN and expert widths left at 0 are the
// target's scaled by the width ratio, which newRatios expresses as the target's head dim
// and the width ratio itself; the expert count enters no rule.
func fillBase(base Shape, cb Base, target Shape) Shape {
	pick := func(v, c, t int) int {
		if v != 0 {
			return v
		}
		if c != 0 {
			return c
		}
		return t
	}
	base.DModel = pick(base.DModel, cb.DModel, target.DModel)
	base.NLayers = pick(base.NLayers, cb.NLayers, target.NLayers)
	base.BatchTokens = pick(base.BatchTokens, cb.BatchTokens, target.BatchTokens)
	if base.TrainTokens == 0 {
		base.TrainTokens = cb.TrainTokens
	}
	if base.TrainTokens == 0 {
		base.TrainTokens = target.TrainTokens
	}
	return base
}

// ratios holds how far the target is from the proxy along every axis a rule reads.
type ratios struct {
	target               Shape
	width                float64 // m = d_model / base d_model
	ffn, expert          float64 // ffn_hidden and expert_hidden over the proxy's; m where not given
	headDim, baseHeadDim float64 // d_model / n_heads of target and proxy
	depthBranch, depthLR float64 // (L/L_base)^-α and (L/L_base)^(α-1)
	lrScale              float64 // √(B/B_base) · (D/D_base)^-γ
	ablate               ablated // rules metap.ablate switches back to sp's values
}

func newRatios(cfg Config, base, target Shape) ratios {
	m := float64(target.DModel) / float64(base.DModel)
	r := ratios{target: target, width: m, ffn: m, expert: m, ablate: newAblated(cfg.Ablate)}
	if base.FFNHidden > 0 && target.FFNHidden > 0 {
		r.ffn = float64(target.FFNHidden) / float64(base.FFNHidden)
	}
	if base.ExpertHidden > 0 && target.ExpertHidden > 0 {
		r.expert = float64(target.ExpertHidden) / float64(base.ExpertHidden)
	}
	r.headDim = float64(target.DModel) / float64(target.NHeads)
	r.baseHeadDim = r.headDim
	if base.NHeads > 0 {
		r.baseHeadDim = float64(base.DModel) / float64(base.NHeads)
	}
	depth := float64(target.NLayers) / float64(base.NLayers)
	if r.ablate["depth"] {
		depth = 1
	}
	r.depthBranch = math.Pow(depth, -cfg.DepthAlpha)
	r.depthLR = math.Pow(depth, cfg.DepthAlpha-1)
	r.lrScale = 1
	if !r.ablate["batch_lr"] {
		r.lrScale *= math.Sqrt(float64(target.BatchTokens) / float64(base.BatchTokens))
	}
	if !r.ablate["horizon_lr"] {
		r.lrScale *= math.Pow(target.TrainTokens/base.TrainTokens, -cfg.HorizonExponent)
	}
	return r
}

// apply turns e, holding the base values, into μP's values [TP5], and with full set into
// MetaP's: μP plus CompleteP depth, the batch and horizon learning-rate rules, and
// width-scaled Adam eps and weight decay. Each rule that r.ablate names is skipped, so
// that its value stays the base value (Ablations lists them).
//
// Width [TP5, Table 8, the form with multipliers that microsoft/mup implements]:
//   - Hidden and expert matrices: init σ/√m and Adam LR η/m, with m the ratio of the
//     tensor's fan-in (d_model for q/k/v/o and the up projections, ffn_hidden or
//     expert_hidden for the down projections; routed and shared experts alike).
//   - Readout (LM head): forward multiplier 1/m times metap.readout_mult, a base value
//     tuned on the proxy (untuned, it cost metap its lead over sp: docs/metap.md,
//     "Ablations and base values"); LR η and init σ unchanged: Table 8's form,
//     microsoft/mup's MuReadout default (readout_zero_init=False). Its init-time
//     logits shrink as 1/√m, which μP allows (the output is o(1) at init and becomes Θ(1)
//     with the updates), and on the proxy itself (m = 1) the table is sp's, so the proxy
//     trains exactly as under sp. Not a zero readout, which [TP5] §D.2 also allows: with
//     Adam a zero or small readout trains the tiny demo far worse, and not only early
//     (docs/metap.md, "Sources, and where they disagree", has the runs and their
//     commands). The ratio of init logits to the first updates is a base value all the
//     same (metap.overrides can raise the readout's LR, as examples/tiny.yaml does;
//     docs/metap.md, "Coord check").
//   - Router: output-like, since its fan-out is the expert count, not a width: multiplier
//     1/m on its logits, LR η, but init σ: a zero router would send every token to the
//     same expert (ties) until it learns.
//   - Embedding and patch projection: input-like, σ and η unchanged. [uMuP] instead lowers
//     the embedding LR by 1/√(fan-out); herd follows [TP5] and [CompleteP], whose depth
//     rules were derived and validated with a width-independent embedding LR, and [uMuP]'s
//     rule belongs with its unit-scaled forward, which herd does not use.
//   - Gains: vector-like, LR η.
//   - LoRA adapters: no width rule; loraEntry's values. The rank is not a width the rules
//     transfer along: a fine-tune keeps its base model's shape.
//
// Depth [CompleteP, Table 1, α = depth_alpha]: every residual branch output is multiplied
// by (L/L_base)^-α (the Mult of wo and of every w2: the branch is linear in it); every
// tensor inside a block, hidden weights, expert and router weights and norm gains alike,
// gets LR × (L/L_base)^(α-1), which is 1 at CompleteP's α = 1; init does not change.
//
// Batch and horizon, for every tensor: LR × √(B/B_base) [SDE] × (D/D_base)^-γ [Horizon].
// Only the learning rate follows [SDE]; betas keep their values.
//
// Adam eps: under μP with the 1/m readout, the gradient reaching the residual stream is
// Θ(1/m), so every tensor's gradient entries are Θ(1/m), and inside a block they also
// carry the branch multiplier (L/L_base)^-α. eps follows its tensor's gradient so that it
// keeps the same weight against √v: ε/m for every tensor, times (L/L_base)^-α inside
// blocks. This is [CompleteP]'s rule; its reference code first applied the hidden
// weights' factor to every tensor and, since a fix that cites the paper's Equation 40 (and
// arXiv 2512.22382), does as herd: ε/m for the embedding, the final norm and the
// unembedding, ε/m·(L/L_base)^-α for every tensor inside the blocks.
//
// Weight decay: matrices whose LR falls as η/m decay with λ·m, so that the decay per step,
// LR × WeightDecay, does not change with width [CompleteP, Table 1; its reference code
// does the same and does not compensate the depth factor, which is 1 at α = 1]. The batch
// and horizon rules change LR × WeightDecay with the learning rate: [WDScale] asks for
// LR × WeightDecay ∝ B/D, to keep the averaging timescale a fixed fraction of the run, and
// √B·D^-γ moves the same way; keeping it invariant there would move it against [WDScale].
func (r ratios) apply(e *Entry, full bool) error {
	inBlock := strings.HasPrefix(e.Name, "layers.")
	branchOut := inBlock && (strings.HasSuffix(e.Name, ".attn.wo") || strings.HasSuffix(e.Name, ".w2"))
	depthEps := 1.0
	if inBlock {
		depthEps = r.depthBranch
	}
	ab := r.ablate
	switch e.Class {
	case Embedding, Patch, Gain, LoRAA, LoRAB:
	case Hidden, Expert:
		m, err := r.fanIn(e.Tensor)
		if err != nil {
			return err
		}
		if !ab["hidden_init"] {
			e.InitStd /= math.Sqrt(m)
		}
		if !ab["hidden_lr"] {
			e.LR /= m
		}
		if full {
			if !ab["weight_decay"] {
				e.WeightDecay *= m
			}
			if branchOut {
				e.Mult = r.depthBranch
			}
		}
	case Router, Readout:
		m, err := r.fanIn(e.Tensor)
		if err != nil {
			return err
		}
		if !(e.Class == Readout && ab["readout_mult"] || e.Class == Router && ab["router_mult"]) {
			e.Mult /= m
		}
	}
	if full {
		if inBlock {
			e.LR *= r.depthLR
		}
		e.LR *= r.lrScale
		if !ab["eps"] {
			e.Eps = e.Eps / r.width * depthEps
		}
	}
	return nil
}

// fanIn is the width ratio of the tensor's fan-in, its last dimension: d_model, ffn_hidden
// or expert_hidden of the target over the proxy's. A fan-in that is none of them, or two of
// them with different ratios, cannot be scaled and is the caller's bug.
func (r ratios) fanIn(t Tensor) (float64, error) {
	if len(t.Shape) < 2 {
		return 0, fmt.Errorf("metap: %s (%s) has shape %v, want a matrix", t.Name, t.Class, t.Shape)
	}
	in := t.Shape[len(t.Shape)-1]
	found := 0.0
	for _, c := range []struct {
		size  int
		ratio float64
	}{{r.target.DModel, r.width}, {r.target.FFNHidden, r.ffn}, {r.target.ExpertHidden, r.expert}} {
		if c.size != in {
			continue
		}
		if found != 0 && found != c.ratio {
			return 0, fmt.Errorf("metap: fan-in %d of %s is both d_model and a hidden width with different base sizes", in, t.Name)
		}
		found = c.ratio
	}
	if found == 0 {
		return 0, fmt.Errorf("metap: fan-in %d of %s is not d_model, ffn_hidden or expert_hidden of the target %+v", in, t.Name, r.target)
	}
	return found, nil
}

// attnScale is μP's attention scaling [TP5, §B.1]: logits q·k/d_head instead of
// q·k/√d_head, so that they stay Θ(1) once q and k become correlated by training, with the
// constant chosen so that the proxy keeps 1/√d_head: √(d_base)/d. When the head dim equals
// the proxy's (heads grow with width, the default) this is the model's own 1/√d_head and
// the table says 0, the model default, so that the same attention code runs bit for bit.
func (r ratios) attnScale() float64 {
	if r.headDim == r.baseHeadDim || r.ablate["attn_scale"] {
		return 0
	}
	return math.Sqrt(r.baseHeadDim) / r.headDim
}
