package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/metap"
)

// Legend, used in every shape comment of this package:
//
//	B sequences in the micro-batch, T positions per sequence, N = B*T rows (tokens)
//	V vocab, C d_model, L layers, H query heads, KV key/value heads, D head dim
//	F dense SwiGLU hidden, E routed experts, k experts per token, G expert hidden
//	NP image patches in the batch, P pixels per patch
//
// The model's computation is specified in docs/model.md; the files of this package follow
// it layer by layer, each forward beside its backward: embed.go (token embedding and image
// patches), attention.go, ffn.go (dense SwiGLU and mixture of experts), head.go (final
// norm, LM head, cross-entropy).

// Model is the decoder with its parameters, gradients and the activations of one
// micro-batch. F is float32 for training and float64 for gradient checks: the same code
// runs in both.
type Model[F kernels.Float] struct {
	Cfg    Config
	Layout *Layout
	Params []F // flat, Layout order
	Grads  []F // same layout; Backward accumulates (+=) into it
	// Mult is a forward multiplier per tensor, in Layout order, default 1: the output of
	// that tensor's matmul or lookup is scaled by it (MetaP sets the readout's 1/m, the
	// residual branches' wo and w2 by depth, ...). Ignored for RMSNorm gains.
	Mult []F
	// AttnScale multiplies the attention logits q·k; default 1/sqrt(D) (MetaP may set 1/D).
	AttnScale F

	be         kernels.Backend[F]
	microBatch int
	layers     []layer
	emb, patch int // tensor indices; patch = -1 without vision
	norm, out  int
	cos, sin   []F // [T, D/2] RoPE angles for positions 0..T-1

	// The last Forward's batch, in the form the kernels take.
	b, t, n int
	ids     []int32 // [N] token id, or -1 where an image patch enters instead
	targets []int32 // [N]
	pos     []int32 // [N]
	doc     []int32 // [N]
	mask    []F     // [N] loss weight
	tokens  float64 // Σ mask
	patchAt []int32 // [NP] flat positions of the patches
	pixels  []F     // [NP, P]

	x       [][]F // L+1 residual streams [N, C]: x[0] embeddings, x[l+1] after block l
	acts    []layerActs[F]
	xf      []F // [N, C] final-normed stream
	rstdf   []F // [N]
	logits  []F // [N, V]
	lossRow []F // [N] per-row cross-entropy
	lseRow  []F // [N] per-row logsumexp of the logits

	g grads[F] // scratch for activation gradients, reused by every layer

	loads [][]float64 // the last Forward's Result.ExpertLoad, reused by the next

	// linears, once SetLinears ran, runs the GEMMs whose weight starts at the key instead
	// of MatMul: one per hidden and expert matrix (per expert).
	linears map[*F]Linear[F]
	// codec, once SetCodec ran, keeps the activations that only Backward reads; dec is
	// Backward's float32 scratch for unpacking them (see SetCodec).
	codec Codec[F]
	dec   []F
}

// Linear runs one linear layer's GEMMs: y = s·x·Wᵀ and its backward, dW += s·dyᵀ·x and
// dx = s·dy·W (dx += … when accumulate), with the x and W of its last Forward, which it
// keeps itself (FP8 training: fp8.Linear keeps them as FP8 codes).
type Linear[F kernels.Float] interface {
	Forward(y, x, W []F, s F, n, in, out int)
	Backward(dx, dW, dy []F, s F, accumulate bool)
}

// Result is what one Forward reports.
type Result struct {
	Loss       float64     // mean cross-entropy over Mask-weighted positions
	Aux        float64     // load-balancing loss, already times moe.aux_loss
	Tokens     float64     // Σ Mask: the weight of Loss in a mean over micro-batches
	ExpertLoad [][]float64 // per MoE layer, the fraction of routed slots each expert got; the model's, overwritten by the next Forward
}

// layer holds the tensor indices of one block (-1 where the block has no such tensor).
type layer struct {
	attnNorm, wq, wk, wv, wo, ffnNorm int
	w1, w3, w2                        int // dense
	router, ew1, ew3, ew2             int // MoE routed experts
	sw1, sw3, sw2                     int // MoE shared expert
	moe, rope                         bool
}

// New allocates a model for micro-batches of up to microBatch sequences of cfg.SeqLen
// positions: parameters, gradients and every activation, once, so that training steps
// allocate nothing large. Parameters start at zero; call Init. cfg must be valid.
func New[F kernels.Float](cfg Config, be kernels.Backend[F], microBatch int) *Model[F] {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("model.New: %v", err))
	}
	lay := NewLayout(cfg)
	m := &Model[F]{
		Cfg: cfg, Layout: lay, be: be, microBatch: microBatch,
		Params: make([]F, lay.Total), Grads: make([]F, lay.Total), Mult: make([]F, len(lay.Tensors)),
		AttnScale: F(1 / math.Sqrt(float64(cfg.HeadDim()))),
	}
	for i := range m.Mult {
		m.Mult[i] = 1
	}
	idx := func(format string, args ...any) int {
		name := fmt.Sprintf(format, args...)
		i, ok := lay.index[name]
		if !ok {
			return -1
		}
		return i
	}
	m.emb, m.patch = idx("tok_embeddings.weight"), idx("patch_proj.weight")
	m.norm, m.out = idx("norm.weight"), idx("output.weight")
	for i := range cfg.NLayers {
		p := func(s string) int { return idx("layers.%d.%s", i, s) }
		m.layers = append(m.layers, layer{
			attnNorm: p("attn_norm.weight"), wq: p("attn.wq"), wk: p("attn.wk"), wv: p("attn.wv"), wo: p("attn.wo"),
			ffnNorm: p("ffn_norm.weight"), w1: p("ffn.w1"), w3: p("ffn.w3"), w2: p("ffn.w2"),
			router: p("moe.router"), ew1: p("moe.experts.w1"), ew3: p("moe.experts.w3"), ew2: p("moe.experts.w2"),
			sw1: p("moe.shared.w1"), sw3: p("moe.shared.w3"), sw2: p("moe.shared.w2"),
			moe: cfg.IsMoE(i), rope: cfg.UsesRoPE(i),
		})
	}

	// RoPE angles: pair j of a head turns by pos·theta^(-2j/D), computed in float64.
	T, D := cfg.SeqLen, cfg.HeadDim()
	m.cos, m.sin = make([]F, T*D/2), make([]F, T*D/2)
	for p := range T {
		for j := range D / 2 {
			s, c := math.Sincos(float64(p) * math.Pow(cfg.RopeTheta, -float64(2*j)/float64(D)))
			m.cos[p*D/2+j], m.sin[p*D/2+j] = F(c), F(s)
		}
	}

	N, C, V := microBatch*T, cfg.DModel, cfg.VocabSize
	m.ids, m.targets, m.pos, m.doc = make([]int32, N), make([]int32, N), make([]int32, N), make([]int32, N)
	m.mask = make([]F, N)
	if P := cfg.PatchPixels(); P > 0 {
		m.patchAt, m.pixels = make([]int32, 0, N), make([]F, 0, N*P)
	}
	m.x = make([][]F, cfg.NLayers+1)
	for i := range m.x {
		m.x[i] = make([]F, N*C)
	}
	m.acts = make([]layerActs[F], cfg.NLayers)
	for i := range m.acts {
		m.acts[i] = newLayerActs[F](cfg, m.layers[i].moe, N)
	}
	m.xf, m.rstdf, m.logits = make([]F, N*C), make([]F, N), make([]F, N*V)
	m.lossRow, m.lseRow = make([]F, N), make([]F, N)
	m.g = newGrads[F](cfg, N)
	return m
}

// Init draws every matrix from N(0, std(t)²) (std 0 gives zeros) and sets RMSNorm gains
// to 1. Each tensor has its own random stream seeded by (seed, tensor index), so the
// result does not depend on the order or the threads that fill the tensors.
func (m *Model[F]) Init(seed uint64, std func(Tensor) float64) {
	for i, t := range m.Layout.Tensors {
		w := m.Params[t.Offset : t.Offset+t.Size()]
		if t.Class == metap.Gain {
			for j := range w {
				w[j] = 1
			}
			continue
		}
		s := std(t)
		if s == 0 {
			clear(w) // +0, not the -0 of 0·(negative draw)
			continue
		}
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		for j := range w {
			w[j] = F(s * rng.NormFloat64())
		}
	}
}

// w returns the parameters of tensor i; dw its gradient.
func (m *Model[F]) w(i int) []F {
	t := m.Layout.Tensors[i]
	return m.Params[t.Offset : t.Offset+t.Size()]
}

func (m *Model[F]) dw(i int) []F {
	t := m.Layout.Tensors[i]
	return m.Grads[t.Offset : t.Offset+t.Size()]
}

// Forward runs the model on b (b.B <= microBatch sequences of b.T <= seq_len positions)
// and keeps the activations that Backward needs.
func (m *Model[F]) Forward(b *data.Batch) Result {
	m.load(b)
	res := Result{Tokens: m.tokens, ExpertLoad: m.loads[:0]}
	m.embedForward()
	for i := range m.layers {
		m.attentionForward(i)
		if m.layers[i].moe {
			aux, load := m.moeForward(i)
			res.Aux += aux
			res.ExpertLoad = append(res.ExpertLoad, load)
		} else {
			m.denseForward(i)
		}
	}
	res.Loss = m.headForward()
	m.loads = res.ExpertLoad
	return res
}

// Backward accumulates into Grads the gradients of scale·(Loss + Aux) of the last Forward.
func (m *Model[F]) Backward(scale F) {
	m.headBackward(scale)
	for i := len(m.layers) - 1; i >= 0; i-- {
		if m.layers[i].moe {
			m.moeBackward(i, scale)
		} else {
			m.denseBackward(i)
		}
		m.attentionBackward(i)
	}
	m.embedBackward()
}

// Logits returns the last Forward's logits, [B*T, V], row b*T+t predicting the token after
// position t of sequence b. The slice is overwritten by the next Forward.
func (m *Model[F]) Logits() []F { return m.logits[:m.n*m.Cfg.VocabSize] }

// load checks b against the model's sizes and converts it to the kernels' form.
func (m *Model[F]) load(b *data.Batch) {
	if b.B < 1 || b.B > m.microBatch || b.T < 1 || b.T > m.Cfg.SeqLen {
		panic(fmt.Sprintf("model: batch of %d×%d does not fit micro-batch %d × seq_len %d", b.B, b.T, m.microBatch, m.Cfg.SeqLen))
	}
	m.b, m.t, m.n = b.B, b.T, b.B*b.T
	V := int32(m.Cfg.VocabSize)
	m.ids, m.targets, m.pos, m.doc, m.mask = m.ids[:m.n], m.targets[:m.n], m.pos[:m.n], m.doc[:m.n], m.mask[:m.n]
	m.tokens = 0
	for i := range m.n {
		if b.Tokens[i] < 0 || b.Tokens[i] >= V || b.Targets[i] < 0 || b.Targets[i] >= V {
			panic(fmt.Sprintf("model: row %d: token %d or target %d outside vocab [0, %d)", i, b.Tokens[i], b.Targets[i], V))
		}
		if b.Pos[i] < 0 || int(b.Pos[i]) >= m.Cfg.SeqLen {
			panic(fmt.Sprintf("model: row %d: position %d outside [0, seq_len %d)", i, b.Pos[i], m.Cfg.SeqLen))
		}
		m.ids[i], m.targets[i] = b.Tokens[i], b.Targets[i]
		m.pos[i], m.doc[i] = b.Pos[i], b.Doc[i]
		m.mask[i] = F(b.Mask[i])
		m.tokens += float64(b.Mask[i])
	}
	m.patchAt, m.pixels = m.patchAt[:0], m.pixels[:0]
	if len(b.PatchAt) == 0 {
		return
	}
	if m.patch < 0 {
		panic("model: batch has image patches but the model has no vision")
	}
	P := m.Cfg.PatchPixels()
	if len(b.Patches) != len(b.PatchAt)*P {
		panic(fmt.Sprintf("model: %d patches need %d pixels, batch has %d", len(b.PatchAt), len(b.PatchAt)*P, len(b.Patches)))
	}
	for _, at := range b.PatchAt {
		if at < 0 || int(at) >= m.n {
			panic(fmt.Sprintf("model: patch position %d outside [0, %d)", at, m.n))
		}
		m.ids[at] = -1
		m.patchAt = append(m.patchAt, at)
	}
	for _, p := range b.Patches {
		m.pixels = append(m.pixels, F(p))
	}
}
