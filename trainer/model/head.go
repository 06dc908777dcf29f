package model

import "github.com/herdml/herd/kernels"

// Input and output ends of the model.
//
// Input: x0[t] = tok_embeddings[token_t]·m_emb, except at image-patch positions, where
// x0[t] = (patch_proj·pixels)·m_patch. Output: logits = RMSNorm(x_L)·g·outputᵀ·m_out, and
// the loss is Σ_t mask_t·CE(logits_t, target_t) / Σ_t mask_t.

// embedForward writes m.x[0].
func (m *Model[F]) embedForward() {
	N, C, in := m.n, m.Cfg.DModel, &m.in
	x := m.x[0].Slice(0, N*C)
	m.be.Embedding(x, m.w(m.emb), in.ids, C, m.Mult[m.emb])
	if m.np == 0 {
		return
	}
	xp := m.g.tmp.Slice(0, m.np*C)
	m.linear(xp, in.pixels, m.patch, m.np, m.Cfg.PatchPixels(), C)
	m.be.ScatterRows(x, xp, in.patchAt, C)
}

// embedBackward accumulates the embedding and patch projection gradients from m.g.dx.
func (m *Model[F]) embedBackward() {
	N, C, in := m.n, m.Cfg.DModel, &m.in
	dx := m.g.dx.Slice(0, N*C)
	if dw := m.dw(m.emb); dw.Len() > 0 {
		m.be.EmbeddingBackward(dw, dx, in.ids, C, m.Mult[m.emb])
	}
	if m.np == 0 || m.dw(m.patch).Len() == 0 {
		return
	}
	dxp := m.g.dxp.Slice(0, m.np*C)
	m.be.GatherRows(dxp, dx, in.patchAt, kernels.Buf[F]{}, C)
	if s := m.Mult[m.patch]; s != 1 {
		m.be.Scale(dxp, s)
	}
	m.be.MatMul(m.dw(m.patch), dxp, in.pixels, C, m.np, m.Cfg.PatchPixels(), true, false, true)
}

// headForward computes the logits and returns the mean masked cross-entropy, read back
// from the backend as one scalar.
func (m *Model[F]) headForward() float64 {
	N, C, V := m.n, m.Cfg.DModel, m.Cfg.VocabSize
	x, xf, logits := m.x[len(m.layers)].Slice(0, N*C), m.xf.Slice(0, N*C), m.logits.Slice(0, N*V)
	m.be.RMSNorm(xf, m.rstdf.Slice(0, N), x, m.w(m.norm), C, m.Cfg.NormEps)
	m.linear(logits, xf, m.out, N, C, V)
	m.be.CrossEntropy(m.lossRow.Slice(0, N), m.lseRow.Slice(0, N), logits, m.in.targets, V)
	if m.tokens == 0 {
		return 0
	}
	return m.be.Dot(m.in.mask, m.lossRow.Slice(0, N)) / m.tokens
}

// headBackward starts the backward pass: it sets m.g.dx = dL/dx_L for L = scale·loss.
func (m *Model[F]) headBackward(scale F) {
	N, C, V := m.n, m.Cfg.DModel, m.Cfg.VocabSize
	g, be := &m.g, m.be
	w := g.w.Slice(0, N)
	be.LossWeights(w, m.in.mask, scale, m.tokens)
	dl := g.dlogits.Slice(0, N*V)
	kernels.Zero(be, dl)
	be.CrossEntropyBackward(dl, m.logits.Slice(0, N*V), m.lseRow.Slice(0, N), m.in.targets, w, V)
	dh := g.dh.Slice(0, N*C)
	m.linearBackward(dh, dl, m.xf.Slice(0, N*C), m.out, N, C, V, false)
	dx := g.dx.Slice(0, N*C)
	kernels.Zero(be, dx)
	be.RMSNormBackward(dx, m.dw(m.norm), dh, m.x[len(m.layers)].Slice(0, N*C), m.w(m.norm), m.rstdf.Slice(0, N), C)
}
