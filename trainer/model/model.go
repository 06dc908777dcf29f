package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

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
// micro-batch, all in its backend's memory; the host sees them only at the crossing
// points of docs/kernels.md (the batch upload, Init's upload, the scalar read-backs of
// Forward and ActStats). F is float32 for training and float64 for gradient checks: the
// same code runs in both.
type Model[F kernels.Float] struct {
	Cfg    Config
	Layout *Layout
	Params kernels.Buf[F] // flat, Layout order
	Grads  kernels.Buf[F] // the trainable tensors' (Tensor.Grad); Backward accumulates (+=) into it
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
	cos, sin   kernels.Buf[F] // [T, D/2] RoPE angles for positions 0..T-1

	// With qk_norm: its RMSNorm's gain of ones [D], and that gain's gradient, never read.
	ones, dOnes kernels.Buf[F]

	// The last Forward's batch: its sizes, its rows in the kernels' form (views of inAll,
	// which has room for a full micro-batch), and the host staging that load validates it
	// into before the batch upload.
	b, t, n, np int
	in, inAll   batchBufs[F]
	inHost      batchHost[F]
	tokens      float64 // Σ mask
	// chunkOf, with attention_chunk, maps a sequence's (doc, chunk) to its id in chunkDoc
	// while load computes them; kept to reuse its memory.
	chunkOf map[[2]int32]int32

	x       []kernels.Buf[F] // L+1 residual streams [N, C]: x[0] embeddings, x[l+1] after block l
	acts    []layerActs[F]
	xf      kernels.Buf[F] // [N, C] final-normed stream
	rstdf   kernels.Buf[F] // [N]
	logits  kernels.Buf[F] // [N, V]
	lossRow kernels.Buf[F] // [N] per-row cross-entropy
	lseRow  kernels.Buf[F] // [N] per-row logsumexp of the logits

	g grads[F] // scratch for activation gradients, reused by every layer

	loads   [][]float64 // the last Forward's Result.ExpertLoad, reused by the next
	probSum []float64   // [E] host scratch: a MoE layer's router probabilities summed over tokens

	// linears, once SetLinears ran, runs the GEMMs whose weight starts at the key (its
	// Addr) instead of MatMul: one per hidden and expert matrix (per expert).
	linears map[uintptr]Linear[F]
	// codec, once SetCodec ran, keeps the activations that only Backward reads; dec is
	// Backward's float32 scratch for unpacking them (see SetCodec).
	codec Codec[F]
	dec   kernels.Buf[F]

	// adapters are the layout's LoRA adapters by the address of their target's weights
	// (see lora.go); loraTmp is their backward's scratch.
	adapters map[uintptr]*adapter[F]
	loraTmp  kernels.Buf[F]
	// With adapter dropout: the key of the next training forward's masks (nil: no
	// dropout), the identity index and two [N, in] scratch buffers of its backward.
	dropKey         *DropoutKey
	loraIdent       kernels.Buf[int32]
	loraDx, loraDxd kernels.Buf[F]
	// frozenGain receives the gradient of a frozen RMSNorm gain, which the backend's
	// RMSNormBackward computes with dx; never read.
	frozenGain kernels.Buf[F]
}

// batchBufs is a batch in the form the kernels take.
type batchBufs[F kernels.Float] struct {
	ids     kernels.Buf[int32] // [N] token id, or -1 where an image patch enters instead
	targets kernels.Buf[int32] // [N]
	pos     kernels.Buf[int32] // [N]
	doc     kernels.Buf[int32] // [N]
	mask    kernels.Buf[F]     // [N] loss weight
	patchAt kernels.Buf[int32] // [NP] flat positions of the patches
	pixels  kernels.Buf[F]     // [NP, P]

	// Llama 4's attention options, each only when configured (see attention.go).
	chunkDoc kernels.Buf[int32] // [N] attention_chunk: the RoPE layers' doc, one id per (doc, chunk)
	temp     kernels.Buf[F]     // [N] attn_temperature: the NoPE layers' query multiplier of each row
	rows     kernels.Buf[int32] // [N] attn_temperature: 0, 1, ..., the index of GatherRows that scales rows by temp
}

// batchHost is the host side of the batch upload, batchBufs' fields as host slices with
// room for a full micro-batch. On a host backend they are the buffers' own memory
// (kernels.ToHost), so that the upload copies nothing.
type batchHost[F kernels.Float] struct {
	ids, targets, pos, doc, patchAt, chunkDoc []int32
	mask, pixels, temp                        []F
}

// Linear runs one linear layer's GEMMs: y = s·x·Wᵀ and its backward, dW += s·dyᵀ·x and
// dx = s·dy·W (dx += … when accumulate), with the x and W of its last Forward, which it
// keeps itself (FP8 training: fp8.Linear keeps them as FP8 codes).
type Linear[F kernels.Float] interface {
	Forward(y, x, W kernels.Buf[F], s F, n, in, out int)
	Backward(dx, dW, dy kernels.Buf[F], s F, accumulate bool) // empty dx or dW: not needed
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
// positions: parameters, gradients and every activation, once, in be's memory, so that
// training steps allocate nothing large. Parameters start at zero; call Init. cfg must be
// valid.
func New[F kernels.Float](cfg Config, be kernels.Backend[F], microBatch int) *Model[F] {
	return NewWithLayout[F](cfg, NewLayout(cfg), be, microBatch)
}

// NewWithLayout is New with the layout given: NewLayout(cfg), maybe with LoRA adapters
// (AddLoRA) and frozen tensors (Freeze), which get no gradient memory.
func NewWithLayout[F kernels.Float](cfg Config, lay *Layout, be kernels.Backend[F], microBatch int) *Model[F] {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("model.New: %v", err))
	}
	m := &Model[F]{
		Cfg: cfg, Layout: lay, be: be, microBatch: microBatch,
		Params: kernels.Alloc[F](be, lay.Total), Grads: kernels.Alloc[F](be, lay.Trainable), Mult: make([]F, len(lay.Tensors)),
		AttnScale:  F(1 / math.Sqrt(float64(cfg.HeadDim()))),
		frozenGain: kernels.Alloc[F](be, cfg.DModel),
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
	m.cos, m.sin = ropeTables(cfg, be)
	if cfg.QKNorm {
		D := cfg.HeadDim()
		m.ones, m.dOnes = kernels.Alloc[F](be, D), kernels.Alloc[F](be, D)
		kernels.Upload(be, m.ones, slices.Repeat([]F{1}, D))
	}

	N, C, V := microBatch*cfg.SeqLen, cfg.DModel, cfg.VocabSize
	alloc := func(n int) kernels.Buf[F] { return kernels.Alloc[F](be, n) }
	m.inAll, m.inHost = newBatchBufs(cfg, be, N)
	m.x = make([]kernels.Buf[F], cfg.NLayers+1)
	for i := range m.x {
		m.x[i] = alloc(N * C)
	}
	m.acts = make([]layerActs[F], cfg.NLayers)
	for i := range m.acts {
		m.acts[i] = newLayerActs[F](cfg, be, m.layers[i], N)
	}
	m.xf, m.rstdf, m.logits = alloc(N*C), alloc(N), alloc(N*V)
	m.lossRow, m.lseRow = alloc(N), alloc(N)
	m.g = newGrads[F](cfg, be, N)
	m.probSum = make([]float64, cfg.MoE.Experts)
	m.setAdapters()
	return m
}

// ropeTables returns the RoPE angles' cosines and sines [T, D/2]: pair j of a head turns by
// pos·RopeFreqs(cfg)[j], computed in float64 on the host and uploaded.
func ropeTables[F kernels.Float](cfg Config, be kernels.Backend[F]) (cos, sin kernels.Buf[F]) {
	T, D := cfg.SeqLen, cfg.HeadDim()
	cos, sin = kernels.Alloc[F](be, T*D/2), kernels.Alloc[F](be, T*D/2)
	hc, hs := kernels.ToHost(be, cos), kernels.ToHost(be, sin)
	freqs := RopeFreqs(cfg)
	for p := range T {
		for j, f := range freqs {
			s, c := math.Sincos(float64(p) * f)
			hc[p*D/2+j], hs[p*D/2+j] = F(c), F(s)
		}
	}
	kernels.Upload(be, cos, hc)
	kernels.Upload(be, sin, hs)
	return cos, sin
}

// RopeFreqs returns RoPE's D/2 angular frequencies, in radians per position:
// rope_theta^(-2j/D) for pair j, rescaled as Llama 3.1's "llama3" rope_scaling does when
// rope_scaling.factor is set. With L = original_max_positions, a frequency whose
// wavelength 2π/f is under L/high_freq_factor is kept (it turns many times within the
// trained context), one whose wavelength is over L/low_freq_factor is divided by factor
// (it never completed a turn there, so it is stretched to cover factor times more
// positions), and one between is interpolated: f·((1-s)/factor + s) with
// s = (L/wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor). With equal
// factors (as Llama 4's configs have) the two bounds meet and nothing is interpolated.
// This is transformers' _compute_llama3_parameters, in float64 rather than float32.
func RopeFreqs(cfg Config) []float64 {
	D, r := cfg.HeadDim(), cfg.RopeScaling
	freqs := make([]float64, D/2)
	for j := range freqs {
		f := math.Pow(cfg.RopeTheta, -float64(2*j)/float64(D))
		if r.Factor > 0 {
			L, wave := float64(r.OriginalMaxPositions), 2*math.Pi/f
			switch {
			case wave < L/r.HighFreqFactor:
			case wave > L/r.LowFreqFactor:
				f /= r.Factor
			case r.HighFreqFactor > r.LowFreqFactor:
				s := (L/wave - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
				f *= (1-s)/r.Factor + s
			}
		}
		freqs[j] = f
	}
	return freqs
}

// newBatchBufs allocates a batch of up to N rows in be and its host staging.
func newBatchBufs[F kernels.Float](cfg Config, be kernels.Backend[F], N int) (batchBufs[F], batchHost[F]) {
	ints := func() kernels.Buf[int32] { return kernels.Alloc[int32](be, N) }
	d := batchBufs[F]{ids: ints(), targets: ints(), pos: ints(), doc: ints(), mask: kernels.Alloc[F](be, N)}
	if P := cfg.PatchPixels(); P > 0 {
		d.patchAt, d.pixels = ints(), kernels.Alloc[F](be, N*P)
	}
	if cfg.AttentionChunk > 0 {
		d.chunkDoc = ints()
	}
	if cfg.AttnTemperature.FloorScale > 0 {
		d.temp, d.rows = kernels.Alloc[F](be, N), ints()
		rows := kernels.ToHost(be, d.rows)
		for i := range rows {
			rows[i] = int32(i)
		}
		kernels.Upload(be, d.rows, rows)
	}
	h := batchHost[F]{
		ids: kernels.ToHost(be, d.ids), targets: kernels.ToHost(be, d.targets),
		pos: kernels.ToHost(be, d.pos), doc: kernels.ToHost(be, d.doc), mask: kernels.ToHost(be, d.mask),
		patchAt: kernels.ToHost(be, d.patchAt), pixels: kernels.ToHost(be, d.pixels),
		chunkDoc: kernels.ToHost(be, d.chunkDoc), temp: kernels.ToHost(be, d.temp),
	}
	return d, h
}

// Init draws every matrix from N(0, std(t)²) (std 0 gives zeros) and sets RMSNorm gains
// to 1. Each tensor has its own random stream seeded by (seed, tensor index), so the
// result does not depend on the order or the threads that fill the tensors. It draws on
// the host and uploads the parameters (no copy on a host backend).
func (m *Model[F]) Init(seed uint64, std func(Tensor) float64) {
	params := kernels.ToHost(m.be, m.Params)
	for i, t := range m.Layout.Tensors {
		w := params[t.Offset : t.Offset+t.Size()]
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
	kernels.Upload(m.be, m.Params, params)
}

// w returns the parameters of tensor i; dw its gradient.
func (m *Model[F]) w(i int) kernels.Buf[F] {
	t := m.Layout.Tensors[i]
	return m.Params.Slice(t.Offset, t.Offset+t.Size())
}

// A frozen tensor has no gradient: dw is empty, which the products skip, except for a
// gain, whose gradient the backend's RMSNormBackward computes anyway: it gets frozenGain.
func (m *Model[F]) dw(i int) kernels.Buf[F] {
	t := m.Layout.Tensors[i]
	switch {
	case !t.Frozen():
		return m.Grads.Slice(t.Grad, t.Grad+t.Size())
	case t.Class == metap.Gain:
		return m.frozenGain.Slice(0, t.Size())
	}
	return kernels.Buf[F]{}
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
	kernels.Zero(m.be, m.frozenGain) // so that its sums stay finite
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
// position t of sequence b, in the backend's memory (callers Download them). The buffer is
// overwritten by the next Forward.
func (m *Model[F]) Logits() kernels.Buf[F] { return m.logits.Slice(0, m.n*m.Cfg.VocabSize) }

// load checks b against the model's sizes on the host, into the host staging, and uploads
// it: the batch upload.
func (m *Model[F]) load(b *data.Batch) {
	if b.B < 1 || b.B > m.microBatch || b.T < 1 || b.T > m.Cfg.SeqLen {
		panic(fmt.Sprintf("model: batch of %d×%d does not fit micro-batch %d × seq_len %d", b.B, b.T, m.microBatch, m.Cfg.SeqLen))
	}
	m.b, m.t, m.n = b.B, b.T, b.B*b.T
	V := int32(m.Cfg.VocabSize)
	h := &m.inHost
	m.tokens = 0
	for i := range m.n {
		if b.Tokens[i] < 0 || b.Tokens[i] >= V || b.Targets[i] < 0 || b.Targets[i] >= V {
			panic(fmt.Sprintf("model: row %d: token %d or target %d outside vocab [0, %d)", i, b.Tokens[i], b.Targets[i], V))
		}
		if b.Pos[i] < 0 || int(b.Pos[i]) >= m.Cfg.SeqLen {
			panic(fmt.Sprintf("model: row %d: position %d outside [0, seq_len %d)", i, b.Pos[i], m.Cfg.SeqLen))
		}
		h.ids[i], h.targets[i] = b.Tokens[i], b.Targets[i]
		h.pos[i], h.doc[i] = b.Pos[i], b.Doc[i]
		h.mask[i] = F(b.Mask[i])
		m.tokens += float64(b.Mask[i])
	}
	m.np = len(b.PatchAt)
	if m.np > 0 {
		m.loadPatches(b)
	}
	if m.Cfg.AttentionChunk > 0 {
		m.loadChunks()
	}
	if t := m.Cfg.AttnTemperature; t.FloorScale > 0 {
		for i, p := range h.pos[:m.n] {
			h.temp[i] = F(t.at(int(p)))
		}
	}
	m.upload()
}

// loadPatches checks b's image patches and stages them: their positions, which get the
// token id -1, and their pixels.
func (m *Model[F]) loadPatches(b *data.Batch) {
	if m.patch < 0 {
		panic("model: batch has image patches but the model has no vision")
	}
	P := m.Cfg.PatchPixels()
	if len(b.Patches) != len(b.PatchAt)*P {
		panic(fmt.Sprintf("model: %d patches need %d pixels, batch has %d", len(b.PatchAt), len(b.PatchAt)*P, len(b.Patches)))
	}
	h := &m.inHost
	for i, at := range b.PatchAt {
		if at < 0 || int(at) >= m.n {
			panic(fmt.Sprintf("model: patch position %d outside [0, %d)", at, m.n))
		}
		h.ids[at] = -1
		h.patchAt[i] = at
	}
	for i, p := range b.Patches {
		h.pixels[i] = F(p)
	}
}

// upload copies the staged batch of m.n rows and m.np patches into the backend's buffers
// and makes m.in their views.
func (m *Model[F]) upload() {
	n, np, P := m.n, m.np, m.Cfg.PatchPixels()
	all, h := &m.inAll, &m.inHost
	m.in = batchBufs[F]{
		ids: all.ids.Slice(0, n), targets: all.targets.Slice(0, n), pos: all.pos.Slice(0, n), doc: all.doc.Slice(0, n),
		mask: all.mask.Slice(0, n), patchAt: all.patchAt.Slice(0, np), pixels: all.pixels.Slice(0, np*P),
	}
	if all.chunkDoc.Len() > 0 {
		m.in.chunkDoc = all.chunkDoc.Slice(0, n)
		kernels.Upload(m.be, m.in.chunkDoc, h.chunkDoc[:n])
	}
	if all.temp.Len() > 0 {
		m.in.temp, m.in.rows = all.temp.Slice(0, n), all.rows.Slice(0, n)
		kernels.Upload(m.be, m.in.temp, h.temp[:n])
	}
	in := &m.in
	kernels.Upload(m.be, in.ids, h.ids[:n])
	kernels.Upload(m.be, in.targets, h.targets[:n])
	kernels.Upload(m.be, in.pos, h.pos[:n])
	kernels.Upload(m.be, in.doc, h.doc[:n])
	kernels.Upload(m.be, in.mask, h.mask[:n])
	kernels.Upload(m.be, in.patchAt, h.patchAt[:np])
	kernels.Upload(m.be, in.pixels, h.pixels[:np*P])
}
