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

	// Once SetCodec ran, q, k, v, att, xmid and y are nil and kept here instead (see
	// SetCodec), and so is the block's input stream x[i] (see savedX).
	qc, kc, vc, attc, xmidc, yc, xc packed
}

// ffnActs are one SwiGLU feed-forward's activations: a1 = h·W1ᵀ, a3 = h·W3ᵀ,
// u = silu(a1)⊙a3 and s = sigmoid(a1).
type ffnActs[F kernels.Float] struct {
	a1, a3, u, s []F    // [rows, hidden]
	a1c, a3c     packed // a1 and a3 once SetCodec ran (a1 and a3 are nil then)
}

func newFFNActs[F kernels.Float](n int) ffnActs[F] {
	return ffnActs[F]{a1: make([]F, n), a3: make([]F, n), u: make([]F, n), s: make([]F, n)}
}

// rows returns the activations of rows [lo, hi) (a routed expert's share of the block).
func (a ffnActs[F]) rows(lo, hi, hid int) ffnActs[F] {
	part := func(s []F) []F {
		if s == nil {
			return nil
		}
		return s[lo*hid : hi*hid]
	}
	return ffnActs[F]{part(a.a1), part(a.a3), part(a.u), part(a.s), a.a1c.rows(lo, hi), a.a3c.rows(lo, hi)}
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
// handles one layer at a time. After SetLinears and SetCodec the forward pass computes
// into it too the float32 activations that it does not keep (see those), since no forward
// reads a gradient.
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

// Codec keeps activations that only the backward pass reads in one byte per value plus a
// float32 scale per tile of a row (FP8 training: fp8.TileCodec, E4M3 with one scale per
// 1×128 tile). A matrix of rows × cols values takes codes [rows·cols] and scales
// [rows·Scales(cols)], row after row, so that a range of rows is a matrix of its own.
type Codec[F kernels.Float] interface {
	Scales(cols int) int
	Encode(codes []uint8, scales []float32, src []F, cols int)
	Decode(dst []F, codes []uint8, scales []float32, cols int)
}

// packed is one activation of up to rows × cols values kept by the model's Codec.
type packed struct {
	codes    []uint8
	scales   []float32
	cols, ns int // ns: scales per row
}

func newPacked[F kernels.Float](c Codec[F], rows, cols int) packed {
	ns := c.Scales(cols)
	return packed{make([]uint8, rows*cols), make([]float32, rows*ns), cols, ns}
}

// rows returns rows [lo, hi) of p (a routed expert's share of the block).
func (p packed) rows(lo, hi int) packed {
	if p.codes == nil {
		return p
	}
	return packed{p.codes[lo*p.cols : hi*p.cols], p.scales[lo*p.ns : hi*p.ns], p.cols, p.ns}
}

// pack keeps src, whole rows of p.cols values, in p.
func (m *Model[F]) pack(p packed, src []F) {
	m.codec.Encode(p.codes[:len(src)], p.scales[:len(src)/p.cols*p.ns], src, p.cols)
}

// unpack writes into dst the first len(dst) values that pack kept in p.
func (m *Model[F]) unpack(dst []F, p packed) {
	m.codec.Decode(dst, p.codes[:len(dst)], p.scales[:len(dst)/p.cols*p.ns], p.cols)
}

// SetCodec makes the model keep the largest activations that only its backward pass reads
// (attention's q, k, v and output, each SwiGLU's inputs a1 and a3, the residual streams
// before and after attention x_i and x_mid, the routed experts' outputs y) through c
// instead of in float32:
// with fp8.TileCodec 1 + 1/32 bytes per value instead of 4, the FP8 activation storage of
// DeepSeek-V3 and COAT (docs/fp8.md).
//
// The forward pass computes them in float32 as before, but in buffers that no forward
// reads otherwise (q, k, v, att in the gradient scratch dq, dk, dv, datt; a1 and a3 in
// da1, da3; y in dhg; x_mid in the next residual stream, to which the feed-forward then
// adds its output; the block's input streams x_i in two float32 buffers in turn, since a
// block reads only its own and writes the next), and packs them once their last forward
// reader ran: the forward pass,
// and so the loss, does not change. sigmoid(a1) is only written, a block of rows at a time,
// and after SetLinears the SwiGLU output u goes to du (w2's Linear keeps its own copy), so
// neither needs a buffer of its own. The backward pass unpacks q, k, v and att into the
// feed-forward's gradient scratch (free while attention's backward runs), x_mid and x_i
// into the forward's scratch, and a1 and a3 a block of rows at a time, recomputing sigmoid(a1) from
// them; its gradients are those of the unpacked values. Call it before the first Forward,
// and after SetLinears if the model has Linears.
func (m *Model[F]) SetCodec(c Codec[F]) {
	m.codec = c
	N, C := m.microBatch*m.Cfg.SeqLen, m.Cfg.DModel
	H, KV, D := m.Cfg.NHeads, m.Cfg.NKVHeads, m.Cfg.HeadDim()
	k, G := max(m.Cfg.MoE.TopK, 1), m.Cfg.MoE.ExpertHidden
	dec := 0 // m.dec: the SwiGLU backward's blocks, attention's q, k, v, att if da1 is short
	if att := N * (2*H*D + 2*KV*D); att > len(m.g.da1) {
		dec = att
	}
	ffn := func(f *ffnActs[F], rows, hid int) {
		f.a1c, f.a3c = newPacked(c, rows, hid), newPacked(c, rows, hid)
		f.a1, f.a3 = nil, nil
		dec = max(dec, 3*swiGLURows(hid)*hid)
	}
	for i := range m.acts {
		a := &m.acts[i]
		// Even the empty slices of SetLinears' shared buffers would keep them alive.
		a.ffn.s, a.experts.s = nil, nil
		if m.linears != nil { // u goes to du (see ffnForward); w2's Linear keeps its copy
			a.ffn.u, a.experts.u = nil, nil
		}
		a.qc, a.kc, a.vc, a.attc = newPacked(c, N, H*D), newPacked(c, N, KV*D), newPacked(c, N, KV*D), newPacked(c, N, H*D)
		a.xmidc, a.xc = newPacked(c, N, C), newPacked(c, N, C)
		a.q, a.k, a.v, a.att, a.xmid = nil, nil, nil, nil, nil
		if !m.layers[i].moe {
			ffn(&a.ffn, N, m.Cfg.FFNHidden)
			continue
		}
		if m.Cfg.MoE.SharedExpert {
			ffn(&a.ffn, N, G)
		}
		ffn(&a.experts, N*k, G)
		a.yc, a.y = newPacked(c, N*k, C), nil
	}
	m.dec = make([]F, dec)
	for i := 2; i < len(m.x); i++ { // the last stream stays float32: the head reads it
		m.x[i] = m.x[i%2]
	}
}

// xmid returns block i's residual stream after attention during the forward pass: a.xmid,
// or with a codec the next residual stream x[i+1], which holds it until the feed-forward
// adds its output.
func (m *Model[F]) xmid(i int) []F {
	if m.codec != nil {
		return m.x[i+1][:m.n*m.Cfg.DModel]
	}
	return m.acts[i].xmid[:m.n*m.Cfg.DModel]
}

// savedXmid returns block i's residual stream after attention once the forward pass is
// over: a.xmid, or with a codec its packed copy unpacked into the forward's scratch g.tmp.
func (m *Model[F]) savedXmid(i int) []F {
	n := m.n * m.Cfg.DModel
	if m.codec == nil {
		return m.acts[i].xmid[:n]
	}
	x := m.g.tmp[:n]
	m.unpack(x, m.acts[i].xmidc)
	return x
}

// savedX returns residual stream x[i], block i's input or, for i = L, the last block's
// output, once the forward pass is over: m.x[i], or with a codec, below L, its packed copy
// unpacked into dst.
func (m *Model[F]) savedX(i int, dst []F) []F {
	n := m.n * m.Cfg.DModel
	if m.codec == nil || i == len(m.layers) {
		return m.x[i][:n]
	}
	m.unpack(dst[:n], m.acts[i].xc)
	return dst[:n]
}
