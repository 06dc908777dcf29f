package model

import "github.com/herdml/herd/kernels"

// layerActs are the activations of one block that its backward needs. Shapes use the
// legend in model.go; each buffer has room for the full micro-batch and is resliced to the
// current batch's N rows.
type layerActs[F kernels.Float] struct {
	h1, rstd1 []F // [N, C], [N]: attention-norm output and its reciprocal rms
	q         []F // [N, H*D] after RoPE
	k, v      []F // [N, KV*D], k after RoPE
	att, lse  []F // [N, H*D], [N, H]: attention output and per-row logsumexp
	xmid      []F // [N, C] residual stream after attention
	h2, rstd2 []F // [N, C], [N]: ffn-norm output and its reciprocal rms
	ffn       ffnActs[F]

	// MoE only. Slot (t, j) is token t's j-th routed expert; gathered rows group the
	// slots by expert, in token order within an expert.
	r, probs []F       // [N, E] router logits and their softmax
	gate     []F       // [N*k] sigmoid gate of slot (t, j)
	slotRow  []int32   // [N*k] gathered row of slot (t, j)
	rowTok   []int32   // [N*k] token of each gathered row
	rowGate  []F       // [N*k] gate of each gathered row
	start    []int     // [E+1] first gathered row of each expert
	load     []float64 // [E] fraction of slots routed to each expert
	hg       []F       // [N*k, C] gathered ffn-norm outputs
	experts  ffnActs[F]
	y        []F // [N*k, C] expert outputs before gating
}

// ffnActs are one SwiGLU feed-forward's activations: a1 = h·W1ᵀ, a3 = h·W3ᵀ,
// u = silu(a1)⊙a3 and s = sigmoid(a1).
type ffnActs[F kernels.Float] struct {
	a1, a3, u, s []F // [rows, hidden]
}

func newFFNActs[F kernels.Float](n int) ffnActs[F] {
	return ffnActs[F]{make([]F, n), make([]F, n), make([]F, n), make([]F, n)}
}

// rows returns the activations of rows [lo, hi) (a routed expert's share of the block).
func (a ffnActs[F]) rows(lo, hi, hid int) ffnActs[F] {
	return ffnActs[F]{a.a1[lo*hid : hi*hid], a.a3[lo*hid : hi*hid], a.u[lo*hid : hi*hid], a.s[lo*hid : hi*hid]}
}

func newLayerActs[F kernels.Float](cfg Config, moe bool, N int) layerActs[F] {
	C, H, KV, D := cfg.DModel, cfg.NHeads, cfg.NKVHeads, cfg.HeadDim()
	a := layerActs[F]{
		h1: make([]F, N*C), rstd1: make([]F, N),
		q: make([]F, N*H*D), k: make([]F, N*KV*D), v: make([]F, N*KV*D),
		att: make([]F, N*H*D), lse: make([]F, N*H),
		xmid: make([]F, N*C), h2: make([]F, N*C), rstd2: make([]F, N),
	}
	if !moe {
		a.ffn = newFFNActs[F](N * cfg.FFNHidden)
		return a
	}
	E, k, G := cfg.MoE.Experts, cfg.MoE.TopK, cfg.MoE.ExpertHidden
	if cfg.MoE.SharedExpert {
		a.ffn = newFFNActs[F](N * G)
	}
	a.r, a.probs = make([]F, N*E), make([]F, N*E)
	a.gate, a.slotRow, a.rowTok, a.rowGate = make([]F, N*k), make([]int32, N*k), make([]int32, N*k), make([]F, N*k)
	a.start, a.load = make([]int, E+1), make([]float64, E)
	a.hg, a.y = make([]F, N*k*C), make([]F, N*k*C)
	a.experts = newFFNActs[F](N * k * G)
	return a
}

// grads is scratch for activation gradients, shared by all layers since the backward pass
// handles one layer at a time.
type grads[F kernels.Float] struct {
	dx       []F // [N, C] gradient of the residual stream at the current point
	dh       []F // [N, C] gradient of a norm output
	dy       []F // [max(N, N*k), C] gradient of a branch output (scaled in place)
	dq, datt []F // [N, H*D]
	dk, dv   []F // [N, KV*D]
	da1, da3 []F // [rows*hidden] of the largest feed-forward
	du       []F
	dhg      []F // [N*k, C] gradient of the gathered expert inputs
	dgate    []F // [N*k] gradient of each gathered row's gate
	dr       []F // [N, E] gradient of the router logits
	dlogits  []F // [N, V]
	w        []F // [N] per-row cross-entropy weight
	tmp      []F // [N, C] forward scratch for branch outputs
	dxp      []F // [NP, C] gradient of the projected patches
}

func newGrads[F kernels.Float](cfg Config, N int) grads[F] {
	C, H, KV, D, V := cfg.DModel, cfg.NHeads, cfg.NKVHeads, cfg.HeadDim(), cfg.VocabSize
	k, E := max(cfg.MoE.TopK, 1), cfg.MoE.Experts
	hid := N * cfg.FFNHidden
	if E > 0 {
		hid = max(hid, N*k*cfg.MoE.ExpertHidden, N*cfg.MoE.ExpertHidden)
	}
	g := grads[F]{
		dx: make([]F, N*C), dh: make([]F, N*C), dy: make([]F, N*k*C),
		dq: make([]F, N*H*D), datt: make([]F, N*H*D), dk: make([]F, N*KV*D), dv: make([]F, N*KV*D),
		da1: make([]F, hid), da3: make([]F, hid), du: make([]F, hid),
		dlogits: make([]F, N*V), w: make([]F, N), tmp: make([]F, N*C),
	}
	if E > 0 {
		g.dhg, g.dgate, g.dr = make([]F, N*k*C), make([]F, N*k), make([]F, N*E)
	}
	if cfg.PatchPixels() > 0 {
		g.dxp = make([]F, N*C)
	}
	return g
}
