package model

// Input and output ends of the model.
//
// Input: x0[t] = tok_embeddings[token_t]·m_emb, except at image-patch positions, where
// x0[t] = (patch_proj·pixels)·m_patch. Output: logits = RMSNorm(x_L)·g·outputᵀ·m_out, and
// the loss is Σ_t mask_t·CE(logits_t, target_t) / Σ_t mask_t.

// embedForward writes m.x[0].
func (m *Model[F]) embedForward() {
	N, C := m.n, m.Cfg.DModel
	x := m.x[0][:N*C]
	m.be.Embedding(x, m.w(m.emb), m.ids, C, m.Mult[m.emb])
	np := len(m.patchAt)
	if np == 0 {
		return
	}
	xp := m.g.tmp[:np*C]
	m.linear(xp, m.pixels, m.patch, np, m.Cfg.PatchPixels(), C)
	for i, at := range m.patchAt {
		copy(x[int(at)*C:int(at)*C+C], xp[i*C:i*C+C])
	}
}

// embedBackward accumulates the embedding and patch projection gradients from m.g.dx.
func (m *Model[F]) embedBackward() {
	N, C := m.n, m.Cfg.DModel
	dx := m.g.dx[:N*C]
	m.be.EmbeddingBackward(m.dw(m.emb), dx, m.ids, C, m.Mult[m.emb])
	np := len(m.patchAt)
	if np == 0 {
		return
	}
	dxp := m.g.dxp[:np*C]
	m.be.GatherRows(dxp, dx, m.patchAt, nil, C)
	if s := m.Mult[m.patch]; s != 1 {
		m.be.Scale(dxp, s)
	}
	m.be.MatMul(m.dw(m.patch), dxp, m.pixels, C, np, m.Cfg.PatchPixels(), true, false, true)
}

// headForward computes the logits and returns the mean masked cross-entropy.
func (m *Model[F]) headForward() float64 {
	N, C, V := m.n, m.Cfg.DModel, m.Cfg.VocabSize
	x := m.x[len(m.layers)][:N*C]
	m.be.RMSNorm(m.xf[:N*C], m.rstdf[:N], x, m.w(m.norm), C, m.Cfg.NormEps)
	m.linear(m.logits[:N*V], m.xf[:N*C], m.out, N, C, V)
	m.be.CrossEntropy(m.lossRow[:N], m.lseRow[:N], m.logits[:N*V], m.targets, V)
	if m.tokens == 0 {
		return 0
	}
	var sum float64
	for i, w := range m.mask {
		sum += float64(w) * float64(m.lossRow[i])
	}
	return sum / m.tokens
}

// headBackward starts the backward pass: it sets m.g.dx = dL/dx_L for L = scale·loss.
func (m *Model[F]) headBackward(scale F) {
	N, C, V := m.n, m.Cfg.DModel, m.Cfg.VocabSize
	g := &m.g
	w := g.w[:N]
	for i, v := range m.mask {
		w[i] = 0
		if m.tokens > 0 {
			w[i] = F(float64(scale) * float64(v) / m.tokens)
		}
	}
	dl := g.dlogits[:N*V]
	clear(dl)
	m.be.CrossEntropyBackward(dl, m.logits[:N*V], m.lseRow[:N], m.targets, w, V)
	dh := g.dh[:N*C]
	m.linearBackward(dh, dl, m.xf[:N*C], m.out, N, C, V, false)
	dx := g.dx[:N*C]
	clear(dx)
	m.be.RMSNormBackward(dx, m.dw(m.norm), dh, m.x[len(m.layers)][:N*C], m.w(m.norm), m.rstdf[:N], C)
}
