package model

import "github.com/herdml/herd/kernels"

// Feed-forward half of a block: x_next = x_mid + FFN(h), h = RMSNorm(x_mid)·g2, where FFN
// is a dense SwiGLU or a mixture of experts.
//
// SwiGLU with weights W1, W3 [hid, C], W2 [C, hid] and multipliers m1, m3, m2:
//
//	a1 = h·W1ᵀ·m1, a3 = h·W3ᵀ·m3, u = silu(a1)⊙a3, y = u·W2ᵀ·m2
//
// Mixture of experts: router logits r = h·Rᵀ·m_r [E]; each token goes to the k experts
// with the largest logits (ties to the lower index) with gate sigmoid(r_e);
// y = Σⱼ gateⱼ·SwiGLU_eⱼ(h) + SwiGLU_shared(h). Load-balancing loss
// aux = coef·E·Σ_e f_e·P_e, f_e the fraction of the N·k slots routed to e (a constant),
// P_e the mean over the N tokens of softmax(r)_e.

// ffnWeights are one SwiGLU's weights, gradients and multipliers.
type ffnWeights[F kernels.Float] struct {
	w1, w3, w2, dw1, dw3, dw2 kernels.Buf[F]
	m1, m3, m2                F
}

// dense returns tensors w1, w3, w2 as one SwiGLU.
func (m *Model[F]) dense(w1, w3, w2 int) ffnWeights[F] {
	return ffnWeights[F]{m.w(w1), m.w(w3), m.w(w2), m.dw(w1), m.dw(w3), m.dw(w2), m.Mult[w1], m.Mult[w3], m.Mult[w2]}
}

// expert returns routed expert e of layer l as one SwiGLU.
func (m *Model[F]) expert(l layer, e int) ffnWeights[F] {
	sz := m.Cfg.MoE.ExpertHidden * m.Cfg.DModel
	part := func(s kernels.Buf[F]) kernels.Buf[F] {
		if s.Len() == 0 { // the gradient of frozen experts
			return s
		}
		return s.Slice(e*sz, e*sz+sz)
	}
	return ffnWeights[F]{part(m.w(l.ew1)), part(m.w(l.ew3)), part(m.w(l.ew2)), part(m.dw(l.ew1)), part(m.dw(l.ew3)), part(m.dw(l.ew2)),
		m.Mult[l.ew1], m.Mult[l.ew3], m.Mult[l.ew2]}
}

// ffnForward writes y = SwiGLU(h) and keeps its activations in a.
//
//	y, h: [n, C]  a.*: [n, hid]
func (m *Model[F]) ffnForward(y, h kernels.Buf[F], a ffnActs[F], w ffnWeights[F], n, hid int) {
	C := m.Cfg.DModel
	a1, a3, u := a.a1, a.a3, a.u
	if m.codec != nil { // computed in gradient scratch, a1 and a3 packed (see SetCodec)
		a1, a3 = m.g.da1, m.g.da3
		if u.Len() == 0 { // w2's Linear keeps its own copy of u
			u = m.g.du
		}
	}
	a1, a3, u = a1.Slice(0, n*hid), a3.Slice(0, n*hid), u.Slice(0, n*hid)
	m.mm(a1, h, w.w1, w.m1, n, C, hid)
	m.mm(a3, h, w.w3, w.m3, n, C, hid)
	if m.codec == nil {
		m.be.SwiGLU(u, a.s.Slice(0, n*hid), a1, a3)
	} else {
		// sigmoid(a1) is recomputed by the backward: write it a block of rows at a time.
		r := swiGLURows(hid)
		for lo := 0; lo < n; lo += r {
			hi := min(lo+r, n)
			rows := func(b kernels.Buf[F]) kernels.Buf[F] { return b.Slice(lo*hid, hi*hid) }
			m.be.SwiGLU(rows(u), m.dec.Slice(0, (hi-lo)*hid), rows(a1), rows(a3))
		}
		m.pack(a.a1c, a1)
		m.pack(a.a3c, a3)
	}
	m.mm(y, u, w.w2, w.m2, n, hid, C)
}

// ffnBackward accumulates the SwiGLU's weight gradients and writes dh (adds to it when
// accumulate is set) from dy, which it scales in place.
func (m *Model[F]) ffnBackward(dh, dy, h kernels.Buf[F], a ffnActs[F], w ffnWeights[F], n, hid int, accumulate bool) {
	C, g, be := m.Cfg.DModel, &m.g, m.be
	da1, da3, du := g.da1.Slice(0, n*hid), g.da3.Slice(0, n*hid), g.du.Slice(0, n*hid)
	u := a.u // empty with a codec and Linears (see SetCodec)
	if u.Len() > 0 {
		u = u.Slice(0, n*hid)
	}
	m.mmBackward(du, w.dw2, dy, u, w.w2, w.m2, n, hid, C, false)
	if m.codec != nil {
		m.swiGLUBackwardPacked(da1, da3, du, a, n, hid)
	} else {
		a1, a3, s := a.a1.Slice(0, n*hid), a.a3.Slice(0, n*hid), a.s.Slice(0, n*hid)
		if m.linears != nil {
			// s (and u) are scratch that later SwiGLUs overwrote (see SetLinears):
			// recompute them from a1 and a3, the same values as the forward's.
			be.SwiGLU(a.u.Slice(0, n*hid), s, a1, a3)
		}
		kernels.Zero(be, da1)
		kernels.Zero(be, da3)
		be.SwiGLUBackward(da1, da3, du, a1, a3, s)
	}
	m.mmBackward(dh, w.dw1, da1, h, w.w1, w.m1, n, C, hid, accumulate)
	m.mmBackward(dh, w.dw3, da3, h, w.w3, w.m3, n, C, hid, true)
}

// swiGLUChunk is about how many values of a1 swiGLUBackwardPacked handles at a time:
// enough for the elementwise kernels to use several threads, little enough for its
// scratch to stay in the L2 cache.
const swiGLUChunk = 1 << 16

// swiGLUBackwardPacked is the SwiGLU backward (da1, da3 = ∂L/∂a1, ∂L/∂a3 from du = ∂L/∂u)
// with a1 and a3 packed by the codec: they and sigmoid(a1) are only read elementwise, so
// they are unpacked and recomputed a block of rows at a time, in m.dec, instead of in three
// float32 buffers as large as the feed-forward.
func (m *Model[F]) swiGLUBackwardPacked(da1, da3, du kernels.Buf[F], a ffnActs[F], n, hid int) {
	r, be := swiGLURows(hid), m.be
	for lo := 0; lo < n; lo += r {
		hi := min(lo+r, n)
		c := (hi - lo) * hid
		a1, a3, s := m.dec.Slice(0, c), m.dec.Slice(r*hid, r*hid+c), m.dec.Slice(2*r*hid, 2*r*hid+c)
		m.unpack(a1, a.a1c.rows(lo, hi))
		m.unpack(a3, a.a3c.rows(lo, hi))
		d1, d3 := da1.Slice(lo*hid, hi*hid), da3.Slice(lo*hid, hi*hid)
		be.SwiGLU(d1, s, a1, a3) // for s; u is not needed (d1 is cleared next)
		kernels.Zero(be, d1)
		kernels.Zero(be, d3)
		be.SwiGLUBackward(d1, d3, du.Slice(lo*hid, hi*hid), a1, a3, s)
	}
}

// swiGLURows is how many rows of hid values swiGLUBackwardPacked handles at a time.
func swiGLURows(hid int) int { return max(1, swiGLUChunk/hid) }

// denseForward runs block i's dense feed-forward half: x_mid -> m.x[i+1].
func (m *Model[F]) denseForward(i int) {
	l, a := m.layers[i], &m.acts[i]
	N, C := m.n, m.Cfg.DModel
	h2, xmid := a.h2.Slice(0, N*C), m.xmid(i)
	m.be.RMSNorm(h2, a.rstd2.Slice(0, N), xmid, m.w(l.ffnNorm), C, m.Cfg.NormEps)
	y := m.g.tmp.Slice(0, N*C)
	m.ffnForward(y, h2, a.ffn, m.dense(l.w1, l.w3, l.w2), N, m.Cfg.FFNHidden)
	xn := m.x[i+1].Slice(0, N*C)
	if m.codec == nil { // else xn is x_mid already
		kernels.Copy(m.be, xn, xmid)
	}
	m.be.Axpy(xn, y, 1)
}

// denseBackward takes m.g.dx = dL/dx_{i+1} to dL/dx_mid of block i.
func (m *Model[F]) denseBackward(i int) {
	l, a, g := m.layers[i], &m.acts[i], &m.g
	N, C := m.n, m.Cfg.DModel
	dx, dy, dh := g.dx.Slice(0, N*C), g.dy.Slice(0, N*C), g.dh.Slice(0, N*C)
	kernels.Copy(m.be, dy, dx)
	m.ffnBackward(dh, dy, a.h2.Slice(0, N*C), a.ffn, m.dense(l.w1, l.w3, l.w2), N, m.Cfg.FFNHidden, false)
	m.be.RMSNormBackward(dx, m.dw(l.ffnNorm), dh, m.savedXmid(i), m.w(l.ffnNorm), a.rstd2.Slice(0, N), C)
}

// moeForward runs block i's mixture-of-experts half: x_mid -> m.x[i+1]. It returns the
// auxiliary loss (times its coefficient) and the experts' load.
func (m *Model[F]) moeForward(i int) (aux float64, load []float64) {
	l, a, be := m.layers[i], &m.acts[i], m.be
	N, C := m.n, m.Cfg.DModel
	E, k, G := m.Cfg.MoE.Experts, m.Cfg.MoE.TopK, m.Cfg.MoE.ExpertHidden
	h2, xmid, xn := a.h2.Slice(0, N*C), m.xmid(i), m.x[i+1].Slice(0, N*C)
	be.RMSNorm(h2, a.rstd2.Slice(0, N), xmid, m.w(l.ffnNorm), C, m.Cfg.NormEps)
	m.linear(a.r.Slice(0, N*E), h2, l.router, N, C, E)
	m.route(a, N)

	if m.codec == nil { // else xn is x_mid already
		kernels.Copy(be, xn, xmid)
	}
	if m.Cfg.MoE.SharedExpert {
		y := m.g.tmp.Slice(0, N*C)
		m.ffnForward(y, h2, a.ffn, m.dense(l.sw1, l.sw3, l.sw2), N, G)
		be.Axpy(xn, y, 1)
	}
	// The gate scales each routed slot's input or its output.
	var inGate, outGate kernels.Buf[F]
	if m.Cfg.MoE.ScoreOnInput {
		inGate = a.rowGate.Slice(0, N*k)
	} else {
		outGate = a.gate.Slice(0, N*k)
	}
	hg := a.hg.Slice(0, N*k*C)
	be.GatherRows(hg, h2, a.rowTok.Slice(0, N*k), inGate, C)
	y := a.y
	if m.codec != nil { // computed in gradient scratch and packed (see SetCodec)
		y = m.g.dhg
	}
	y = y.Slice(0, N*k*C)
	for e := range E {
		lo, hi := a.start[e], a.start[e+1]
		if lo == hi {
			continue
		}
		m.ffnForward(y.Slice(lo*C, hi*C), hg.Slice(lo*C, hi*C), a.experts.rows(lo, hi, G), m.expert(l, e), hi-lo, G)
	}
	be.GatherSum(xn, y, a.slotRow.Slice(0, N*k), outGate, k, C)
	if m.codec != nil && !m.Cfg.MoE.ScoreOnInput { // the gates' backward reads y
		m.pack(a.yc, y)
	}

	// aux = coef·E·Σ_e f_e·P_e, each P_e summed in float64 in token order.
	be.ColumnSums(m.probSum, a.probs.Slice(0, N*E), N, E)
	for e, p := range m.probSum {
		aux += a.load[e] * p / float64(N)
	}
	return m.Cfg.MoE.AuxLoss * float64(E) * aux, a.load // no copy: Result.ExpertLoad says so
}

// route picks each token's top-k experts from the router logits a.r, computes gates and
// softmax, and lays the slots out grouped by expert (the backend's Route); it reads back
// how many slots each expert got and computes, on the host, each expert's first row and
// load.
func (m *Model[F]) route(a *layerActs[F], N int) {
	E, k := m.Cfg.MoE.Experts, m.Cfg.MoE.TopK
	count := a.start[1:]
	m.be.Route(a.probs.Slice(0, N*E), a.gate.Slice(0, N*k), a.rowGate.Slice(0, N*k),
		a.slotRow.Slice(0, N*k), a.rowTok.Slice(0, N*k), count, a.r.Slice(0, N*E), N, E, k)
	for e := range E {
		a.load[e] = float64(count[e]) / float64(N*k)
	}
	// start[e+1] holds expert e's count; prefix sums make start[e] its first row.
	a.start[0] = 0
	for e := 1; e <= E; e++ {
		a.start[e] += a.start[e-1]
	}
}

// moeBackward takes m.g.dx = dL/dx_{i+1} to dL/dx_mid of block i; scale is Backward's, for
// the auxiliary loss.
func (m *Model[F]) moeBackward(i int, scale F) {
	l, a, be, g := m.layers[i], &m.acts[i], m.be, &m.g
	N, C := m.n, m.Cfg.DModel
	E, k, G := m.Cfg.MoE.Experts, m.Cfg.MoE.TopK, m.Cfg.MoE.ExpertHidden
	dx, dh, h2 := g.dx.Slice(0, N*C), g.dh.Slice(0, N*C), a.h2.Slice(0, N*C)
	if m.Cfg.MoE.SharedExpert {
		dy := g.dy.Slice(0, N*C)
		kernels.Copy(be, dy, dx)
		m.ffnBackward(dh, dy, h2, a.ffn, m.dense(l.sw1, l.sw3, l.sw2), N, G, false)
	} else {
		kernels.Zero(be, dh)
	}

	// Routed experts. Gate on the output: gathered row p gets gate_p·dx[token(p)], and its
	// gate <dx[token(p)], y_p>. Gate on the input: row p gets dx[token(p)], its input's
	// gradient dhg_p goes to h[token(p)] times gate_p, and the gate gets <dhg_p, h[token(p)]>.
	onInput := m.Cfg.MoE.ScoreOnInput
	dy, dhg, dgate := g.dy.Slice(0, N*k*C), g.dhg.Slice(0, N*k*C), g.dgate.Slice(0, N*k)
	rowTok, hg := a.rowTok.Slice(0, N*k), a.hg.Slice(0, N*k*C)
	var outGate, inGate kernels.Buf[F]
	if onInput {
		inGate = a.gate.Slice(0, N*k)
	} else {
		outGate = a.rowGate.Slice(0, N*k)
	}
	be.GatherRows(dy, dx, rowTok, outGate, C)
	if !onInput {
		y := a.y
		if m.codec != nil { // unpacked into dhg, which the experts' backward overwrites after
			y = dhg
			m.unpack(y, a.yc)
		}
		be.RowDots(dgate, dx, y.Slice(0, N*k*C), rowTok, C)
	}
	for e := range E {
		lo, hi := a.start[e], a.start[e+1]
		if lo == hi {
			continue
		}
		m.ffnBackward(dhg.Slice(lo*C, hi*C), dy.Slice(lo*C, hi*C), hg.Slice(lo*C, hi*C), a.experts.rows(lo, hi, G), m.expert(l, e), hi-lo, G, false)
	}
	xmid := m.savedXmid(i)
	if m.linears != nil {
		// h2 was scratch (dh, see SetLinears); the router's float32 backward, and the input
		// gates', need it: recompute it, the same values as the forward's (with a codec,
		// those of the unpacked x_mid), in dy, free once the experts' backward ran.
		h2 = dy.Slice(0, N*C)
		be.RMSNorm(h2, a.rstd2.Slice(0, N), xmid, m.w(l.ffnNorm), C, m.Cfg.NormEps)
	}
	if onInput {
		be.RowDots(dgate, h2, dhg, rowTok, C)
	}
	be.GatherSum(dh, dhg, a.slotRow.Slice(0, N*k), inGate, k, C)

	// The router logits' gradient: each gate's through sigmoid', and the aux loss's through
	// the softmax, dP_e = s·coef·E·f_e, P_e = mean_t softmax(r_t)_e.
	dr, probs := g.dr.Slice(0, N*E), a.probs.Slice(0, N*E)
	c := float64(scale) * m.Cfg.MoE.AuxLoss * float64(E) / float64(N)
	be.RouterBackward(dr, probs, dgate, a.rowGate.Slice(0, N*k), rowTok, a.start, a.load, c, N, E)
	m.linearBackward(dh, dr, h2, l.router, N, C, E, true)
	be.RMSNormBackward(dx, m.dw(l.ffnNorm), dh, xmid, m.w(l.ffnNorm), a.rstd2.Slice(0, N), C)
}
