package model

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// Attention block: x_mid = x + (Attention(q, k, v)·Woᵀ)·m_o with h = RMSNorm(x)·g,
// q = RoPE(h·Wqᵀ·m_q), k = RoPE(h·Wkᵀ·m_k), v = h·Wvᵀ·m_v. RoPE is skipped on layers where
// !cfg.UsesRoPE(i). Llama 4's options (docs/model.md), each off by default:
//
//   - qk_norm, on RoPE layers: q and k of every head, after RoPE, are divided by their rms
//     over the head's D features (an RMSNorm with a gain of ones).
//   - attn_temperature, on NoPE layers: the query of a row at position p is multiplied by
//     AttnTemperature.at(p).
//   - attention_chunk c, on RoPE layers: a query at position p sees only the keys at
//     positions of the same chunk, floor(pos/c) = floor(p/c), of its document. The
//     attention kernels mask by equality of a per-row document id, so these layers get
//     one id per (document, chunk) instead (batchBufs.chunkDoc): no kernel of its own.

// at is the query multiplier of attention temperature tuning at position p:
// 1 + scale·log(1 + floor((p+1)/floor_scale)), computed in float64.
func (t AttnTemperature) at(p int) float64 {
	return 1 + t.Scale*math.Log1p(math.Floor(float64(p+1)/t.FloorScale))
}

// loadChunks stages the batch's chunkDoc for attention_chunk c: rows of one sequence get
// the same id exactly when they have the same doc and the same chunk floor(pos/c), the id
// being the row (within the sequence) where that (doc, chunk) first occurs. Sequences
// packed as runs of documents, with pos counting up in each, thus get runs of ids that
// increase, as their docs do, which the CPU's attention handles fastest.
func (m *Model[F]) loadChunks() {
	h, c, T := &m.inHost, int32(m.Cfg.AttentionChunk), m.t
	if m.chunkOf == nil {
		m.chunkOf = map[[2]int32]int32{}
	}
	for s := range m.b {
		clear(m.chunkOf)
		for t := range T {
			i := s*T + t
			key := [2]int32{h.doc[i], h.pos[i] / c}
			id, ok := m.chunkOf[key]
			if !ok {
				id = int32(t)
				m.chunkOf[key] = id
			}
			h.chunkDoc[i] = id
		}
	}
}

// docOf returns the document ids that layer l's attention masks by: the batch's doc, or
// with attention_chunk on a RoPE layer its chunkDoc.
func (m *Model[F]) docOf(l layer) kernels.Buf[int32] {
	if l.rope && m.Cfg.AttentionChunk > 0 {
		return m.in.chunkDoc
	}
	return m.in.doc
}

// project writes block i's queries, keys and values of the n rows of the loaded batch from
// the attention-norm output h1, as the attention takes them: RoPE, qk_norm and the
// attention temperature applied as the layer has them. With qk_norm it keeps q and k
// before the norm, and their rstd, in the layer's activations for the backward pass.
//
//	q: [n, H*D]  k, v: [n, KV*D]  h1: [n, C]
func (m *Model[F]) project(i int, q, k, v, h1 kernels.Buf[F], n int) {
	l, a, be, in := m.layers[i], &m.acts[i], m.be, &m.in
	C, H, KV, D := m.Cfg.DModel, m.Cfg.NHeads, m.Cfg.NKVHeads, m.Cfg.HeadDim()
	qkNorm, temper := m.qkNorm(l), m.temper(l)
	qp, kp := q, k // the projections' outputs
	if qkNorm {
		qp, kp = a.qr.Slice(0, n*H*D), a.kr.Slice(0, n*KV*D)
	}
	if temper { // scaled into q next; the forward's scratch is free until the output projection
		qp = m.g.tmp.Slice(0, n*H*D)
	}
	m.linear(qp, h1, l.wq, n, C, H*D)
	m.linear(kp, h1, l.wk, n, C, KV*D)
	m.linear(v, h1, l.wv, n, C, KV*D)
	if l.rope {
		be.RoPE(qp, in.pos, m.cos, m.sin, H, D)
		be.RoPE(kp, in.pos, m.cos, m.sin, KV, D)
	}
	if qkNorm {
		be.RMSNorm(q, a.rstdq.Slice(0, n*H), qp, m.ones, D, m.Cfg.NormEps)
		be.RMSNorm(k, a.rstdk.Slice(0, n*KV), kp, m.ones, D, m.Cfg.NormEps)
	}
	if temper {
		be.GatherRows(q, qp, in.rows, in.temp, H*D)
	}
}

// qkNorm and temper report whether layer l applies qk_norm and the attention temperature.
func (m *Model[F]) qkNorm(l layer) bool { return l.rope && m.Cfg.QKNorm }
func (m *Model[F]) temper(l layer) bool { return !l.rope && m.Cfg.AttnTemperature.FloorScale > 0 }

// attentionForward runs block i's attention half: m.x[i] -> x_mid (see Model.xmid).
func (m *Model[F]) attentionForward(i int) {
	l, a, be := m.layers[i], &m.acts[i], m.be
	N, C := m.n, m.Cfg.DModel
	H, KV, D := m.Cfg.NHeads, m.Cfg.NKVHeads, m.Cfg.HeadDim()
	x := m.x[i].Slice(0, N*C)
	h1, rstd := a.h1.Slice(0, N*C), a.rstd1.Slice(0, N)
	q, k, v, att := a.q, a.k, a.v, a.att
	if m.codec != nil { // computed in gradient scratch and packed (see SetCodec)
		q, k, v, att = m.g.dq, m.g.dk, m.g.dv, m.g.datt
	}
	q, k, v, att = q.Slice(0, N*H*D), k.Slice(0, N*KV*D), v.Slice(0, N*KV*D), att.Slice(0, N*H*D)
	lse := a.lse.Slice(0, N*H)

	be.RMSNorm(h1, rstd, x, m.w(l.attnNorm), C, m.Cfg.NormEps)
	m.project(i, q, k, v, h1, N)
	be.Attention(att, lse, q, k, v, m.docOf(l), m.b, m.t, H, KV, D, m.AttnScale)
	o := m.g.tmp.Slice(0, N*C)
	m.linear(o, att, l.wo, N, H*D, C)
	if m.codec != nil {
		m.pack(a.qc, q)
		m.pack(a.kc, k)
		m.pack(a.vc, v)
		m.pack(a.attc, att)
	}
	xmid := m.xmid(i)
	kernels.Copy(be, xmid, x)
	be.Axpy(xmid, o, 1)
	if m.codec != nil {
		m.pack(a.xmidc, xmid)
		m.pack(a.xc, x) // its buffer holds x[i+2] next
	}
}

// attentionBackward takes m.g.dx = dL/dx_mid of block i to dL/dx_i and accumulates the
// block's attention parameter gradients.
func (m *Model[F]) attentionBackward(i int) {
	l, a, be, g, in := m.layers[i], &m.acts[i], m.be, &m.g, &m.in
	N, C := m.n, m.Cfg.DModel
	H, KV, D := m.Cfg.NHeads, m.Cfg.NKVHeads, m.Cfg.HeadDim()
	dx, dh := g.dx.Slice(0, N*C), g.dh.Slice(0, N*C)
	dq, dk, dv, datt := g.dq.Slice(0, N*H*D), g.dk.Slice(0, N*KV*D), g.dv.Slice(0, N*KV*D), g.datt.Slice(0, N*H*D)
	q, k, v, att := a.q, a.k, a.v, a.att
	if m.codec != nil {
		buf := m.dec
		if N*(2*H*D+2*KV*D) <= g.da1.Len() { // the feed-forward's scratch is free here
			buf = g.da1
		}
		q, k, v, att = buf, buf.From(N*H*D), buf.From(N*(H*D+KV*D)), buf.From(N*(H*D+2*KV*D))
	}
	q, k, v, att = q.Slice(0, N*H*D), k.Slice(0, N*KV*D), v.Slice(0, N*KV*D), att.Slice(0, N*H*D)
	if m.codec != nil {
		m.unpack(q, a.qc)
		m.unpack(k, a.kc)
		m.unpack(v, a.vc)
		m.unpack(att, a.attc)
	}

	// The residual passes dx through; the branch output o gets dx too.
	do := g.dy.Slice(0, N*C)
	kernels.Copy(be, do, dx)
	m.linearBackward(datt, do, att, l.wo, N, H*D, C, false)
	kernels.Zero(be, dq)
	kernels.Zero(be, dk)
	kernels.Zero(be, dv)
	be.AttentionBackward(dq, dk, dv, datt, att, a.lse.Slice(0, N*H), q, k, v, m.docOf(l), m.b, m.t, H, KV, D, m.AttnScale)
	// project's options backward, into the scratch that is free now: datt, and dy (do).
	if m.temper(l) {
		be.GatherRows(datt, dq, in.rows, in.temp, H*D)
		dq = datt
	}
	if m.qkNorm(l) {
		dqr, dkr := datt, g.dy.Slice(0, N*KV*D)
		kernels.Zero(be, dqr)
		kernels.Zero(be, dkr)
		be.RMSNormBackward(dqr, m.dOnes, dq, a.qr.Slice(0, N*H*D), m.ones, a.rstdq.Slice(0, N*H), D)
		be.RMSNormBackward(dkr, m.dOnes, dk, a.kr.Slice(0, N*KV*D), m.ones, a.rstdk.Slice(0, N*KV), D)
		kernels.Zero(be, m.dOnes) // the gain of ones is no parameter
		dq, dk = dqr, dkr
	}
	if l.rope {
		be.RoPEBackward(dq, in.pos, m.cos, m.sin, H, D)
		be.RoPEBackward(dk, in.pos, m.cos, m.sin, KV, D)
	}
	h1 := a.h1.Slice(0, N*C)
	m.linearBackward(dh, dq, h1, l.wq, N, C, H*D, false)
	m.linearBackward(dh, dk, h1, l.wk, N, C, KV*D, true)
	m.linearBackward(dh, dv, h1, l.wv, N, C, KV*D, true)
	be.RMSNormBackward(dx, m.dw(l.attnNorm), dh, m.savedX(i, m.g.tmp), m.w(l.attnNorm), a.rstd1.Slice(0, N), C)
}

// linear writes y = (x·Wᵀ)·mult for tensor w of shape [out, in], as torch.nn.Linear.
//
//	y: [n, out]  x: [n, in]
func (m *Model[F]) linear(y, x kernels.Buf[F], w, n, in, out int) {
	m.mm(y, x, m.w(w), m.Mult[w], n, in, out)
}

// linearBackward is linear's backward; see mmBackward.
func (m *Model[F]) linearBackward(dx, dy, x kernels.Buf[F], w, n, in, out int, accumulate bool) {
	m.mmBackward(dx, m.dw(w), dy, x, m.w(w), m.Mult[w], n, in, out, accumulate)
}

// mm writes y = (x·Wᵀ)·s.
//
//	y: [n, out]  x: [n, in]  W: [out, in]
func (m *Model[F]) mm(y, x, W kernels.Buf[F], s F, n, in, out int) {
	ad, c := m.adapters[W.Addr()], F(m.Layout.LoRAScale)
	if l := m.linears[W.Addr()]; l != nil {
		l.Forward(y, x, W, s, n, in, out)
		if ad != nil {
			m.adapterForward(ad, y, x, n, in, out, c*s)
		}
		return
	}
	m.be.MatMul(y, x, W, n, in, out, false, true, false)
	if ad != nil {
		m.adapterForward(ad, y, x, n, in, out, c)
	}
	if s != 1 {
		m.be.Scale(y, s)
	}
}

// mmBackward is mm's backward: with dy' = dy·s (dy is scaled in place), dW += dy'ᵀ·x and
// dx = dy'·W, or dx += dy'·W when accumulate is set. An empty dW (a frozen W) skips its
// product; an adapted W adds its adapter's part to dx and accumulates A's and B's
// gradients.
func (m *Model[F]) mmBackward(dx, dW, dy, x, W kernels.Buf[F], s F, n, in, out int, accumulate bool) {
	ad, c := m.adapters[W.Addr()], F(m.Layout.LoRAScale)
	if l := m.linears[W.Addr()]; l != nil {
		if ad == nil {
			l.Backward(dx, dW, dy, s, accumulate)
			return
		}
		// The adapter reads dy before the Linear, which may scale it in place, and puts its
		// part of dx aside until the Linear has written (or added to) dx.
		d := m.loraDxd.Slice(0, n*in)
		m.adapterBackward(ad, d, dy, x, n, in, out, c*s, false)
		l.Backward(dx, dW, dy, s, accumulate)
		m.be.Axpy(dx, d, 1)
		return
	}
	if s != 1 {
		m.be.Scale(dy, s)
	}
	if dW.Len() > 0 {
		m.be.MatMul(dW, dy, x, out, n, in, true, false, true)
	}
	m.be.MatMul(dx, dy, W, n, out, in, false, false, accumulate)
	if ad != nil {
		m.adapterBackward(ad, dx, dy, x, n, in, out, c, true)
	}
}
