package model

import "github.com/herdml/herd/kernels"

// layerActs are the activations of one block that its backward needs. Shapes use the
// legend in model.go; each buffer has room for the full micro-batch and is resliced to the
// current batch's N rows.
type layerActs[F kernels.Float] struct {
	h1, rstd1 kernels.Buf[F] // [N, C], [N]: attention-norm output and its reciprocal rms
	q         kernels.Buf[F] // [N, H*D] after RoPE
	k, v      kernels.Buf[F] // [N, KV*D], k after RoPE
	att, lse  kernels.Buf[F] // [N, H*D], [N, H]: attention output and per-row logsumexp
	xmid      kernels.Buf[F] // [N, C] residual stream after attention
	h2, rstd2 kernels.Buf[F] // [N, C], [N]: ffn-norm output and its reciprocal rms
	ffn       ffnActs[F]

	// With qk_norm on a RoPE layer, q and k above are normed, and the norm's input and
	// rstd kept here, in float32 also after SetCodec.
	qr, kr       kernels.Buf[F] // [N, H*D], [N, KV*D] q and k after RoPE, before the norm
	rstdq, rstdk kernels.Buf[F] // [N*H], [N*KV]

	// MoE only. Slot (t, j) is token t's j-th routed expert; gathered rows group the
	// slots by expert, in token order within an expert.
	r, probs kernels.Buf[F]     // [N, E] router logits and their softmax
	gate     kernels.Buf[F]     // [N*k] sigmoid gate of slot (t, j)
	slotRow  kernels.Buf[int32] // [N*k] gathered row of slot (t, j)
	rowTok   kernels.Buf[int32] // [N*k] token of each gathered row
	rowGate  kernels.Buf[F]     // [N*k] gate of each gathered row
	start    []int              // [E+1] host: first gathered row of each expert
	load     []float64          // [E] host: fraction of slots routed to each expert
	hg       kernels.Buf[F]     // [N*k, C] gathered ffn-norm outputs
	experts  ffnActs[F]
	y        kernels.Buf[F] // [N*k, C] expert outputs (before gating, unless moe.score_on_input)

	// Once SetCodec ran, q, k, v, att, xmid and y are empty and kept here instead (see
	// SetCodec), and so is the block's input stream x[i] (see savedX).
	qc, kc, vc, attc, xmidc, yc, xc packed
}

// ffnActs are one SwiGLU feed-forward's activations: a1 = h·W1ᵀ, a3 = h·W3ᵀ,
// u = silu(a1)⊙a3 and s = sigmoid(a1).
type ffnActs[F kernels.Float] struct {
	a1, a3, u, s kernels.Buf[F] // [rows, hidden]
	a1c, a3c     packed         // a1 and a3 once SetCodec ran (a1 and a3 are empty then)
}

func newFFNActs[F kernels.Float](mem kernels.Memory, n int) ffnActs[F] {
	alloc := func() kernels.Buf[F] { return kernels.Alloc[F](mem, n) }
	return ffnActs[F]{a1: alloc(), a3: alloc(), u: alloc(), s: alloc()}
}

// rows returns the activations of rows [lo, hi) (a routed expert's share of the block).
func (a ffnActs[F]) rows(lo, hi, hid int) ffnActs[F] {
	part := func(s kernels.Buf[F]) kernels.Buf[F] {
		if s.Len() == 0 {
			return s
		}
		return s.Slice(lo*hid, hi*hid)
	}
	return ffnActs[F]{part(a.a1), part(a.a3), part(a.u), part(a.s), a.a1c.rows(lo, hi), a.a3c.rows(lo, hi)}
}

func newLayerActs[F kernels.Float](cfg Config, mem kernels.Memory, l layer, N int) layerActs[F] {
	C, H, KV, D := cfg.DModel, cfg.NHeads, cfg.NKVHeads, cfg.HeadDim()
	alloc := func(n int) kernels.Buf[F] { return kernels.Alloc[F](mem, n) }
	a := layerActs[F]{
		h1: alloc(N * C), rstd1: alloc(N),
		q: alloc(N * H * D), k: alloc(N * KV * D), v: alloc(N * KV * D),
		att: alloc(N * H * D), lse: alloc(N * H),
		xmid: alloc(N * C), h2: alloc(N * C), rstd2: alloc(N),
	}
	if cfg.QKNorm && l.rope {
		a.qr, a.kr, a.rstdq, a.rstdk = alloc(N*H*D), alloc(N*KV*D), alloc(N*H), alloc(N*KV)
	}
	if !l.moe {
		a.ffn = newFFNActs[F](mem, N*cfg.FFNHidden)
		return a
	}
	E, k, G := cfg.MoE.Experts, cfg.MoE.TopK, cfg.MoE.ExpertHidden
	if cfg.MoE.SharedExpert {
		a.ffn = newFFNActs[F](mem, N*G)
	}
	a.r, a.probs = alloc(N*E), alloc(N*E)
	a.gate, a.rowGate = alloc(N*k), alloc(N*k)
	a.slotRow, a.rowTok = kernels.Alloc[int32](mem, N*k), kernels.Alloc[int32](mem, N*k)
	a.start, a.load = make([]int, E+1), make([]float64, E)
	a.hg, a.y = alloc(N*k*C), alloc(N*k*C)
	a.experts = newFFNActs[F](mem, N*k*G)
	return a
}

// grads is scratch for activation gradients, shared by all layers since the backward pass
// handles one layer at a time. After SetLinears and SetCodec the forward pass computes
// into it too the float32 activations that it does not keep (see those), since no forward
// reads a gradient.
type grads[F kernels.Float] struct {
	dx       kernels.Buf[F] // [N, C] gradient of the residual stream at the current point
	dh       kernels.Buf[F] // [N, C] gradient of a norm output
	dy       kernels.Buf[F] // [max(N, N*k), C] gradient of a branch output (scaled in place)
	dq, datt kernels.Buf[F] // [N, H*D]
	dk, dv   kernels.Buf[F] // [N, KV*D]
	da1, da3 kernels.Buf[F] // [rows*hidden] of the largest feed-forward
	du       kernels.Buf[F]
	dhg      kernels.Buf[F] // [N*k, C] gradient of the gathered expert inputs
	dgate    kernels.Buf[F] // [N*k] gradient of each gathered row's gate
	dr       kernels.Buf[F] // [N, E] gradient of the router logits
	dlogits  kernels.Buf[F] // [N, V]
	w        kernels.Buf[F] // [N] per-row cross-entropy weight
	tmp      kernels.Buf[F] // [N, C] forward scratch for branch outputs
	dxp      kernels.Buf[F] // [NP, C] gradient of the projected patches
}

func newGrads[F kernels.Float](cfg Config, mem kernels.Memory, N int) grads[F] {
	C, H, KV, D, V := cfg.DModel, cfg.NHeads, cfg.NKVHeads, cfg.HeadDim(), cfg.VocabSize
	k, E := max(cfg.MoE.TopK, 1), cfg.MoE.Experts
	hid := N * cfg.FFNHidden
	if E > 0 {
		hid = max(hid, N*k*cfg.MoE.ExpertHidden, N*cfg.MoE.ExpertHidden)
	}
	alloc := func(n int) kernels.Buf[F] { return kernels.Alloc[F](mem, n) }
	g := grads[F]{
		dx: alloc(N * C), dh: alloc(N * C), dy: alloc(N * k * C),
		dq: alloc(N * H * D), datt: alloc(N * H * D), dk: alloc(N * KV * D), dv: alloc(N * KV * D),
		da1: alloc(hid), da3: alloc(hid), du: alloc(hid),
		dlogits: alloc(N * V), w: alloc(N), tmp: alloc(N * C),
	}
	if E > 0 {
		g.dhg, g.dgate, g.dr = alloc(N*k*C), alloc(N*k), alloc(N*E)
	}
	if cfg.PatchPixels() > 0 {
		g.dxp = alloc(N * C)
	}
	return g
}

// Codec keeps activations that only the backward pass reads in one byte per value plus a
// float32 scale per tile of a row (FP8 training: fp8.TileCodec, E4M3 with one scale per
// 1×128 tile). A matrix of rows × cols values takes codes [rows·cols] and scales
// [rows·Scales(cols)], row after row, so that a range of rows is a matrix of its own.
type Codec[F kernels.Float] interface {
	Scales(cols int) int
	Encode(codes kernels.Buf[uint8], scales kernels.Buf[float32], src kernels.Buf[F], cols int)
	Decode(dst kernels.Buf[F], codes kernels.Buf[uint8], scales kernels.Buf[float32], cols int)
}

// packed is one activation of up to rows × cols values kept by the model's Codec.
type packed struct {
	codes    kernels.Buf[uint8]
	scales   kernels.Buf[float32]
	cols, ns int // ns: scales per row
}

func newPacked[F kernels.Float](c Codec[F], mem kernels.Memory, rows, cols int) packed {
	ns := c.Scales(cols)
	return packed{kernels.Alloc[uint8](mem, rows*cols), kernels.Alloc[float32](mem, rows*ns), cols, ns}
}

// rows returns rows [lo, hi) of p (a routed expert's share of the block).
func (p packed) rows(lo, hi int) packed {
	if p.codes.Len() == 0 {
		return p
	}
	return packed{p.codes.Slice(lo*p.cols, hi*p.cols), p.scales.Slice(lo*p.ns, hi*p.ns), p.cols, p.ns}
}

// pack keeps src, whole rows of p.cols values, in p.
func (m *Model[F]) pack(p packed, src kernels.Buf[F]) {
	n := src.Len()
	m.codec.Encode(p.codes.Slice(0, n), p.scales.Slice(0, n/p.cols*p.ns), src, p.cols)
}

// unpack writes into dst the first dst.Len() values that pack kept in p.
func (m *Model[F]) unpack(dst kernels.Buf[F], p packed) {
	n := dst.Len()
	m.codec.Decode(dst, p.codes.Slice(0, n), p.scales.Slice(0, n/p.cols*p.ns), p.cols)
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
	if att := N * (2*H*D + 2*KV*D); att > m.g.da1.Len() {
		dec = att
	}
	var none kernels.Buf[F]
	pk := func(rows, cols int) packed { return newPacked(c, m.be, rows, cols) }
	ffn := func(f *ffnActs[F], rows, hid int) {
		f.a1c, f.a3c = pk(rows, hid), pk(rows, hid)
		f.a1, f.a3 = none, none
		dec = max(dec, 3*swiGLURows(hid)*hid)
	}
	for i := range m.acts {
		a := &m.acts[i]
		// Even the empty views of SetLinears' shared buffers would keep them alive.
		a.ffn.s, a.experts.s = none, none
		if m.linears != nil { // u goes to du (see ffnForward); w2's Linear keeps its copy
			a.ffn.u, a.experts.u = none, none
		}
		a.qc, a.kc, a.vc, a.attc = pk(N, H*D), pk(N, KV*D), pk(N, KV*D), pk(N, H*D)
		a.xmidc, a.xc = pk(N, C), pk(N, C)
		a.q, a.k, a.v, a.att, a.xmid = none, none, none, none, none
		if !m.layers[i].moe {
			ffn(&a.ffn, N, m.Cfg.FFNHidden)
			continue
		}
		if m.Cfg.MoE.SharedExpert {
			ffn(&a.ffn, N, G)
		}
		ffn(&a.experts, N*k, G)
		if !m.Cfg.MoE.ScoreOnInput { // else the backward does not read y
			a.yc = pk(N*k, C)
		}
		a.y = none
	}
	m.dec = kernels.Alloc[F](m.be, dec)
	for i := 2; i < len(m.x); i++ { // the last stream stays float32: the head reads it
		m.x[i] = m.x[i%2]
	}
}

// xmid returns block i's residual stream after attention during the forward pass: a.xmid,
// or with a codec the next residual stream x[i+1], which holds it until the feed-forward
// adds its output.
func (m *Model[F]) xmid(i int) kernels.Buf[F] {
	n := m.n * m.Cfg.DModel
	if m.codec != nil {
		return m.x[i+1].Slice(0, n)
	}
	return m.acts[i].xmid.Slice(0, n)
}

// savedXmid returns block i's residual stream after attention once the forward pass is
// over: a.xmid, or with a codec its packed copy unpacked into the forward's scratch g.tmp.
func (m *Model[F]) savedXmid(i int) kernels.Buf[F] {
	n := m.n * m.Cfg.DModel
	if m.codec == nil {
		return m.acts[i].xmid.Slice(0, n)
	}
	x := m.g.tmp.Slice(0, n)
	m.unpack(x, m.acts[i].xmidc)
	return x
}

// savedX returns residual stream x[i], block i's input or, for i = L, the last block's
// output, once the forward pass is over: m.x[i], or with a codec, below L, its packed copy
// unpacked into dst.
func (m *Model[F]) savedX(i int, dst kernels.Buf[F]) kernels.Buf[F] {
	n := m.n * m.Cfg.DModel
	if m.codec == nil || i == len(m.layers) {
		return m.x[i].Slice(0, n)
	}
	x := dst.Slice(0, n)
	m.unpack(x, m.acts[i].xc)
	return x
}
