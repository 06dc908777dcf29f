package model

import "github.com/herdml/herd/metap"

// Plan is what training a model costs, worked out from its shape alone, so that shapes far
// too large for this machine (the scout and maverick presets) can be sized before anyone
// rents the hardware.
type Plan struct {
	Params       int64 `json:"params"`        // every parameter, LoRA adapters included
	Trainable    int64 `json:"trainable"`     // parameters that get gradients and optimizer state: all but the frozen ones
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
	Grads       int64 `json:"grads"`       // FP32 gradients of the trainable parameters
	Optimizer   int64 `json:"optimizer"`   // AdamW's two FP32 moments of the trainable parameters
	Activations int64 `json:"activations"` // every buffer sized by the micro-batch: inputs, saved activations, gradient scratch
	Total       int64 `json:"total"`
}

// Bounds on what a plan counts, checked by validation (Config.Validate for the
// parameters, the run's validation for the activations) before anything is counted in
// integers. Below MaxPlanBytes, every byte count of a plan, their sum, and every tensor's
// and buffer's element count fit in int64 (and int) with room to spare; far larger shapes
// could not be allocated on any machine anyway.
const (
	MaxPlanBytes = 1 << 62
	// ParamBytes is what one parameter costs in training: FP32 weight, gradient and the
	// two AdamW moments.
	ParamBytes = 16
	// ActivationBytes is what one activation value costs: FP32.
	ActivationBytes = 4
)

// NewPlanFor is NewPlan for a model of layout lay (NewLayout(cfg) with LoRA adapters and
// frozen tensors, see NewWithLayout): frozen tensors cost their weights but no gradients
// or moments, and no weight-gradient product (2 of their 6 FLOPs per parameter and
// token); adapters cost what any trainable matrix does, plus the activations they
// allocate (loraActivations).
func NewPlanFor(cfg Config, lay *Layout, microBatch int) Plan {
	p := NewPlan(cfg, microBatch)
	base := NewLayout(cfg)
	p.Params, p.Trainable = int64(lay.Total), int64(lay.Trainable)
	adapters := int64(lay.Total - base.Total)
	p.ActiveParams += adapters
	frozen := 0.0 // matmul parameters a token uses whose dW is skipped
	for _, t := range lay.Tensors {
		if !t.Frozen() {
			continue
		}
		switch {
		case len(t.Shape) == 3: // routed experts: a token uses top_k of them
			frozen += float64(t.Size()) * float64(cfg.MoE.TopK) / float64(cfg.MoE.Experts)
		case t.Class == metap.Hidden || t.Class == metap.Expert || t.Class == metap.Router || t.Class == metap.Readout:
			frozen += float64(t.Size())
		}
	}
	p.MatmulFLOPs += 6*float64(adapters) - 2*frozen
	p.FLOPsPerToken = p.MatmulFLOPs + p.AttentionFLOPs
	m := &p.Memory
	const f32 = 4
	m.Weights = f32 * p.Params
	m.Grads = f32 * p.Trainable
	m.Optimizer = 2 * f32 * p.Trainable
	m.Activations += ActivationBytes * int64(microBatch) * int64(cfg.SeqLen) * lay.loraActivations()
	m.Total = m.Weights + m.Grads + m.Optimizer + m.Activations
	return p
}

// NewPlan plans cfg for micro-batches of microBatch sequences of cfg.SeqLen tokens, every
// parameter trained. cfg must be valid.
func NewPlan(cfg Config, microBatch int) Plan {
	V, C, L := int64(cfg.VocabSize), int64(cfg.DModel), int64(cfg.NLayers)
	H, D, T := int64(cfg.NHeads), int64(cfg.HeadDim()), int64(cfg.SeqLen)
	E, k, G := int64(cfg.MoE.Experts), int64(cfg.MoE.TopK), int64(cfg.MoE.ExpertHidden)

	lay := NewLayout(cfg)
	p := Plan{Params: int64(lay.Total), Trainable: int64(lay.Total), ActiveParams: int64(lay.Total)}
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
	m.Activations = ActivationBytes * tokens * activationsPerToken[int64](cfg)
	m.Total = m.Weights + m.Grads + m.Optimizer + m.Activations
	return p
}

// ParamCount is NewLayout(cfg).Total counted in float64, which cannot wrap, for
// validation to compare with the bounds before anything is counted in integers.
func ParamCount(cfg Config) float64 {
	var n float64
	for _, t := range NewLayout(cfg).Tensors {
		size := 1.0
		for _, d := range t.Shape {
			size *= float64(d)
		}
		n += size
	}
	return n
}

// ActivationValues is the number of activation values New allocates for micro-batches
// of microBatch sequences, counted in float64 (see ParamCount): Memory.Activations is
// ActivationBytes times as many bytes.
func ActivationValues(cfg Config, microBatch int) float64 {
	return float64(microBatch) * float64(cfg.SeqLen) * activationsPerToken[float64](cfg)
}

// activationsPerToken counts the 4-byte values per token of every buffer New allocates in
// proportion to the micro-batch: the batch itself, the residual streams, each block's
// saved activations (acts.go), the head's, and the activation-gradient scratch that the
// backward pass reuses from layer to layer. TestPlanActivationsMatchNew holds it to what
// New really allocates.
// It is counted in int64 for the plan and in float64 for validation.
func activationsPerToken[N int64 | float64](cfg Config) N {
	V, C, L := N(cfg.VocabSize), N(cfg.DModel), N(cfg.NLayers)
	H, KV, D := N(cfg.NHeads), N(cfg.NKVHeads), N(cfg.HeadDim())
	F, E, k, G := N(cfg.FFNHidden), N(cfg.MoE.Experts), N(cfg.MoE.TopK), N(cfg.MoE.ExpertHidden)
	P := N(cfg.PatchPixels())

	n := N(5) // token, target, position, document, loss weight
	if P > 0 {
		n += 1 + P // a patch could sit at every position: its place and pixels
	}
	if cfg.AttentionChunk > 0 {
		n++ // the RoPE layers' document ids
	}
	if cfg.AttnTemperature.FloorScale > 0 {
		n += 2 // query multipliers and their row index
	}
	n += (L + 1) * C       // residual streams
	n += C + 1 + V + 1 + 1 // final norm output and rstd, logits, per-row loss and logsumexp
	for i := range cfg.NLayers {
		n += C + 1 + H*D + 2*KV*D + H*D + H + C + C + 1 // h1, rstd1, q, k, v, att, lse, xmid, h2, rstd2
		if cfg.QKNorm && cfg.UsesRoPE(i) {
			n += H*D + KV*D + H + KV // q and k before the norm, their rstd
		}
		if !cfg.IsMoE(i) {
			n += 4 * F // SwiGLU a1, a3, u, sigmoid(a1)
			continue
		}
		n += 2*E + 4*k + 2*k*C + 4*k*G // router logits and probs, slot tables, gathered inputs and outputs, experts' SwiGLU
		if cfg.MoE.SharedExpert {
			n += 4 * G
		}
	}

	// Gradient scratch, one set for all layers.
	kk, hid := max(k, 1), F
	if E > 0 {
		hid = max(F, k*G, G)
	}
	n += 3*C + kk*C + 2*H*D + 2*KV*D + 3*hid + V + 1 // dx, dh, tmp, dy, dq, datt, dk, dv, da1, da3, du, dlogits, w
	if E > 0 {
		n += k*C + k + E // dhg, dgate, dr
	}
	if P > 0 {
		n += C // dxp
	}
	return n
}
