package model

// Attention block: x_mid = x + (Attention(RoPE(h·Wqᵀ·m_q), RoPE(h·Wkᵀ·m_k), h·Wvᵀ·m_v)·Woᵀ)·m_o
// with h = RMSNorm(x)·g. RoPE is skipped on layers where !cfg.UsesRoPE(i).

// attentionForward runs block i's attention half: m.x[i] -> x_mid (see Model.xmid).
func (m *Model[F]) attentionForward(i int) {
	l, a, be := m.layers[i], &m.acts[i], m.be
	N, C := m.n, m.Cfg.DModel
	H, KV, D := m.Cfg.NHeads, m.Cfg.NKVHeads, m.Cfg.HeadDim()
	x := m.x[i][:N*C]
	h1, rstd := a.h1[:N*C], a.rstd1[:N]
	q, k, v, att := a.q, a.k, a.v, a.att
	if m.codec != nil { // computed in gradient scratch and packed (see SetCodec)
		q, k, v, att = m.g.dq, m.g.dk, m.g.dv, m.g.datt
	}
	q, k, v, att = q[:N*H*D], k[:N*KV*D], v[:N*KV*D], att[:N*H*D]
	lse := a.lse[:N*H]

	be.RMSNorm(h1, rstd, x, m.w(l.attnNorm), C, m.Cfg.NormEps)
	m.linear(q, h1, l.wq, N, C, H*D)
	m.linear(k, h1, l.wk, N, C, KV*D)
	m.linear(v, h1, l.wv, N, C, KV*D)
	if l.rope {
		be.RoPE(q, m.pos, m.cos, m.sin, H, D)
		be.RoPE(k, m.pos, m.cos, m.sin, KV, D)
	}
	be.Attention(att, lse, q, k, v, m.doc, m.b, m.t, H, KV, D, m.AttnScale)
	o := m.g.tmp[:N*C]
	m.linear(o, att, l.wo, N, H*D, C)
	if m.codec != nil {
		m.pack(a.qc, q)
		m.pack(a.kc, k)
		m.pack(a.vc, v)
		m.pack(a.attc, att)
	}
	xmid := m.xmid(i)
	copy(xmid, x)
	be.Axpy(xmid, o, 1)
	if m.codec != nil {
		m.pack(a.xmidc, xmid)
		m.pack(a.xc, x) // its buffer holds x[i+2] next
	}
}

// attentionBackward takes m.g.dx = dL/dx_mid of block i to dL/dx_i and accumulates the
// block's attention parameter gradients.
func (m *Model[F]) attentionBackward(i int) {
	l, a, be, g := m.layers[i], &m.acts[i], m.be, &m.g
	N, C := m.n, m.Cfg.DModel
	H, KV, D := m.Cfg.NHeads, m.Cfg.NKVHeads, m.Cfg.HeadDim()
	dx, dh := g.dx[:N*C], g.dh[:N*C]
	dq, dk, dv, datt := g.dq[:N*H*D], g.dk[:N*KV*D], g.dv[:N*KV*D], g.datt[:N*H*D]
	q, k, v, att := a.q, a.k, a.v, a.att
	if m.codec != nil {
		buf := m.dec
		if N*(2*H*D+2*KV*D) <= len(g.da1) { // the feed-forward's scratch is free here
			buf = g.da1
		}
		q, k, v, att = buf, buf[N*H*D:], buf[N*(H*D+KV*D):], buf[N*(H*D+2*KV*D):]
	}
	q, k, v, att = q[:N*H*D], k[:N*KV*D], v[:N*KV*D], att[:N*H*D]
	if m.codec != nil {
		m.unpack(q, a.qc)
		m.unpack(k, a.kc)
		m.unpack(v, a.vc)
		m.unpack(att, a.attc)
	}

	// The residual passes dx through; the branch output o gets dx too.
	do := g.dy[:N*C]
	copy(do, dx)
	m.linearBackward(datt, do, att, l.wo, N, H*D, C, false)
	clear(dq)
	clear(dk)
	clear(dv)
	be.AttentionBackward(dq, dk, dv, datt, att, a.lse[:N*H], q, k, v, m.doc, m.b, m.t, H, KV, D, m.AttnScale)
	if l.rope {
		be.RoPEBackward(dq, m.pos, m.cos, m.sin, H, D)
		be.RoPEBackward(dk, m.pos, m.cos, m.sin, KV, D)
	}
	h1 := a.h1[:N*C]
	m.linearBackward(dh, dq, h1, l.wq, N, C, H*D, false)
	m.linearBackward(dh, dk, h1, l.wk, N, C, KV*D, true)
	m.linearBackward(dh, dv, h1, l.wv, N, C, KV*D, true)
	be.RMSNormBackward(dx, m.dw(l.attnNorm), dh, m.savedX(i, m.g.tmp), m.w(l.attnNorm), a.rstd1[:N], C)
}

// linear writes y = (x·Wᵀ)·mult for tensor w of shape [out, in], as torch.nn.Linear.
//
//	y: [n, out]  x: [n, in]
func (m *Model[F]) linear(y, x []F, w, n, in, out int) {
	m.mm(y, x, m.w(w), m.Mult[w], n, in, out)
}

// linearBackward is linear's backward; see mmBackward.
func (m *Model[F]) linearBackward(dx, dy, x []F, w, n, in, out int, accumulate bool) {
	m.mmBackward(dx, m.dw(w), dy, x, m.w(w), m.Mult[w], n, in, out, accumulate)
}

// mm writes y = (x·Wᵀ)·s.
//
//	y: [n, out]  x: [n, in]  W: [out, in]
func (m *Model[F]) mm(y, x, W []F, s F, n, in, out int) {
	if l := m.linears[&W[0]]; l != nil {
		l.Forward(y, x, W, s, n, in, out)
		return
	}
	m.be.MatMul(y, x, W, n, in, out, false, true, false)
	if s != 1 {
		m.be.Scale(y, s)
	}
}

// mmBackward is mm's backward: with dy' = dy·s (dy is scaled in place), dW += dy'ᵀ·x and
// dx = dy'·W, or dx += dy'·W when accumulate is set.
func (m *Model[F]) mmBackward(dx, dW, dy, x, W []F, s F, n, in, out int, accumulate bool) {
	if l := m.linears[&W[0]]; l != nil {
		l.Backward(dx, dW, dy, s, accumulate)
		return
	}
	if s != 1 {
		m.be.Scale(dy, s)
	}
	m.be.MatMul(dW, dy, x, out, n, in, true, false, true)
	m.be.MatMul(dx, dy, W, n, out, in, false, false, accumulate)
}
