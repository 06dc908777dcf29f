package model

// Plan is what training a model costs, worked out from its shape alone, so that shapes far
// too large for this machine (the scout and maverick presets) can be sized before anyone
// rents the hardware.
type Plan struct {
	Params       int64 `json:"params"`        // every parameter
	ActiveParams int64 `json:"active_params"` // parameters one text token uses: all but the routed experts it is not sent to
	// Training FLOPs per text token, forward plus backward (backward = 2 × forward).
	MatmulFLOPs    float64 `json:"matmul_flops_per_token"`    // 6 × the active parameters of every matmul (embedding lookup, patch projection and norm gains excluded)
	AttentionFLOPs float64 `json:"attention_flops_per_token"` // q·k and p·v: 3 × 4·H·D per key, (T+1)/2 keys on average under the causal mask
	FLOPsPerToken  float64 `json:"flops_per_token"`           // the sum of the two
	Memory         Memory  `json:"memory_per_rank"`
}

// Memory is bytes per data-parallel rank. Data parallelism replicates the model, so every
// rank holds all of it; FP8 precision keeps FP32 master weights, gradients and moments, so
// the figures are the same for both precisions.
type Memory struct {
	Weights     int64 `json:"weights"`     // FP32 parameters
	Grads       int64 `json:"grads"`       // FP32 gradients, same layout
	Optimizer   int64 `json:"optimizer"`   // AdamW's two FP32 moments
	Activations int64 `json:"activations"` // what the forward pass keeps for the backward, for one micro-batch
	Total       int64 `json:"total"`
}

// NewPlan plans cfg for micro-batches of microBatch sequences of cfg.SeqLen tokens.
// cfg must be valid.
func NewPlan(cfg Config, microBatch int) Plan {
	V, C, L := int64(cfg.VocabSize), int64(cfg.DModel), int64(cfg.NLayers)
	H, D, T := int64(cfg.NHeads), int64(cfg.HeadDim()), int64(cfg.SeqLen)
	E, k, G := int64(cfg.MoE.Experts), int64(cfg.MoE.TopK), int64(cfg.MoE.ExpertHidden)

	lay := NewLayout(cfg)
	p := Plan{Params: int64(lay.Total), ActiveParams: int64(lay.Total)}
	routedIdle := 3 * (E - k) * G * C // routed-expert parameters a token skips in one MoE layer
	for i := range cfg.NLayers {
		if cfg.IsMoE(i) {
			p.ActiveParams -= routedIdle
		}
	}
	// Not matmuls: the embedding is a row lookup, the patch projection only runs on image
	// positions, and the norm gains are elementwise ((2L+1)·C of them).
	matmul := p.ActiveParams - V*C - int64(cfg.PatchPixels())*C - (2*L+1)*C
	p.MatmulFLOPs = 6 * float64(matmul)
	p.AttentionFLOPs = 3 * 4 * float64(L*H*D) * float64(T+1) / 2
	p.FLOPsPerToken = p.MatmulFLOPs + p.AttentionFLOPs

	const f32 = 4
	tokens := int64(microBatch) * T
	m := &p.Memory
	m.Weights = f32 * p.Params
	m.Grads = f32 * p.Params
	m.Optimizer = 2 * f32 * p.Params
	m.Activations = f32 * tokens * activationsPerToken(cfg)
	m.Total = m.Weights + m.Grads + m.Optimizer + m.Activations
	return p
}

// activationsPerToken counts the 4-byte values the forward pass keeps per token for the
// backward: the residual stream entering every block and the final one, each block's
// saved tensors (acts.go) and the head's. The per-layer gradient scratch, reused by every
// layer, is left out. Keep it in step with acts.go and New.
func activationsPerToken(cfg Config) int64 {
	V, C, L := int64(cfg.VocabSize), int64(cfg.DModel), int64(cfg.NLayers)
	H, KV, D := int64(cfg.NHeads), int64(cfg.NKVHeads), int64(cfg.HeadDim())
	F, E, k, G := int64(cfg.FFNHidden), int64(cfg.MoE.Experts), int64(cfg.MoE.TopK), int64(cfg.MoE.ExpertHidden)

	n := (L+1)*C + C + 1 + V + 2 // streams; final norm output and rstd, logits, loss and logsumexp per row
	for i := range cfg.NLayers {
		n += C + 1 + H*D + 2*KV*D + H*D + H + C + C + 1 // h1, rstd1, q, k, v, att, lse, xmid, h2, rstd2
		if !cfg.IsMoE(i) {
			n += 3 * F // a1, a3, u
			continue
		}
		n += 2*E + 4*k + 2*k*C + 3*k*G // router logits and probs, slot tables, gathered inputs and outputs, expert a1/a3/u
		if cfg.MoE.SharedExpert {
			n += 3 * G
		}
	}
	return n
}
