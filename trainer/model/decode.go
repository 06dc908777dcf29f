package model

import (
	"fmt"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/kernels"
)

// Decoding with a KV cache: the forward pass of one new position, for generation.
//
// Forward over a prefix of T positions computes every layer's keys and values of every
// position; the logits of the last position are all generation needs, and the keys and
// values of positions 0..T-2 were already computed by the steps before. A Decoder keeps
// them, per layer, after RoPE (on the layers that use it), and each Step computes only
// the new position's norms, projections, feed-forward (dense or MoE) and logits. It runs
// on the model's own forward code and kernels.Backend ops, one row at a time; only the
// attention is its own (attention below).
//
// Attention through the backend's one Attention op, which computes every query row of a
// causal sequence: the Decoder calls it on the cached keys and values of positions 0..p
// and reads only row p. The rows before p are wasted work, O(p·H·D) each, so a step costs
// O(p²·H·D) in attention where a one-query op would cost O(p·H·D); the projections and
// feed-forward, which dominate at these sizes, are computed once per position. Image
// patches are not supported: a step takes a token id.

// Decoder is a KV cache over one sequence of up to seq_len positions, and the scratch of
// its attention. It borrows the model's activation buffers for the step's one row, so a
// Forward between two Steps is allowed but overwrites nothing the Decoder keeps.
type Decoder[F kernels.Float] struct {
	m      *Model[F]
	k, v   []kernels.Buf[F] // per layer [T, KV*D]: keys (after RoPE) and values of positions 0..Len()-1
	q, att kernels.Buf[F]   // [T, H*D] Attention's queries (row p the step's; rows before it stale) and output
	lse    kernels.Buf[F]   // [T, H]
	doc    kernels.Buf[int32]
	batch  data.Batch // the step's one-token batch
	n      int        // positions cached
}

// NewDecoder allocates a KV cache for sequences of up to seq_len positions in the model's
// backend: 2·L·seq_len·KV·D values, plus seq_len·(2·H·D + H) of attention scratch.
func (m *Model[F]) NewDecoder() *Decoder[F] {
	T, H, KV, D := m.Cfg.SeqLen, m.Cfg.NHeads, m.Cfg.NKVHeads, m.Cfg.HeadDim()
	d := &Decoder[F]{m: m,
		q: kernels.Alloc[F](m.be, T*H*D), att: kernels.Alloc[F](m.be, T*H*D), lse: kernels.Alloc[F](m.be, T*H),
		doc: kernels.Alloc[int32](m.be, T), // one document: every position sees every earlier one
	}
	for range m.layers {
		d.k = append(d.k, kernels.Alloc[F](m.be, T*KV*D))
		d.v = append(d.v, kernels.Alloc[F](m.be, T*KV*D))
	}
	kernels.Zero(m.be, d.q) // the stale rows start finite
	kernels.Zero(m.be, d.doc)
	d.batch.Resize(1, 1)
	return d
}

// Len is the number of positions in the cache: the position the next Step computes.
func (d *Decoder[F]) Len() int { return d.n }

// Cap is the most positions the cache holds: seq_len.
func (d *Decoder[F]) Cap() int { return d.m.Cfg.SeqLen }

// Reset empties the cache for a new sequence.
func (d *Decoder[F]) Reset() { d.n = 0 }

// Step appends token at position Len() and returns the logits [V] that predict the token
// after it, read back to the host (a host view on a host backend, overwritten by the next
// Step or Forward). They equal
// the last row of Forward's logits over the whole sequence up to float32 rounding: the
// GEMMs run on one row instead of many, which may change their summation order. It
// panics if the cache is full (Len() = seq_len) or token is outside the vocabulary.
func (d *Decoder[F]) Step(token int32) []F {
	m := d.m
	if d.n >= m.Cfg.SeqLen {
		panic(fmt.Sprintf("model: KV cache is full at seq_len %d", m.Cfg.SeqLen))
	}
	b := &d.batch
	b.Tokens[0], b.Targets[0], b.Pos[0], b.Doc[0], b.Mask[0] = token, 0, int32(d.n), 0, 0
	m.load(b)
	m.embedForward()
	for i := range m.layers {
		d.attention(i)
		if m.layers[i].moe {
			m.moeForward(i)
		} else {
			m.denseForward(i)
		}
	}
	m.headForward()
	d.n++
	return kernels.ToHost(m.be, m.Logits()) // the logits' read-back
}

// attention is attentionForward for the step's one row p = d.n: its key and value go into
// the cache, and its query attends to the cached positions 0..p.
func (d *Decoder[F]) attention(i int) {
	m := d.m
	l, a, be := m.layers[i], &m.acts[i], m.be
	C, H, KV, D := m.Cfg.DModel, m.Cfg.NHeads, m.Cfg.NKVHeads, m.Cfg.HeadDim()
	p, T := d.n, d.n+1
	x, h1 := m.x[i].Slice(0, C), a.h1.Slice(0, C)
	q := d.q.Slice(p*H*D, T*H*D)
	k, v := d.k[i].Slice(p*KV*D, T*KV*D), d.v[i].Slice(p*KV*D, T*KV*D)

	be.RMSNorm(h1, a.rstd1.Slice(0, 1), x, m.w(l.attnNorm), C, m.Cfg.NormEps)
	m.linear(q, h1, l.wq, 1, C, H*D)
	m.linear(k, h1, l.wk, 1, C, KV*D)
	m.linear(v, h1, l.wv, 1, C, KV*D)
	if l.rope {
		be.RoPE(q, m.in.pos, m.cos, m.sin, H, D)
		be.RoPE(k, m.in.pos, m.cos, m.sin, KV, D)
	}
	be.Attention(d.att.Slice(0, T*H*D), d.lse.Slice(0, T*H), d.q.Slice(0, T*H*D),
		d.k[i].Slice(0, T*KV*D), d.v[i].Slice(0, T*KV*D), d.doc.Slice(0, T), 1, T, H, KV, D, m.AttnScale)
	o := m.g.tmp.Slice(0, C)
	m.linear(o, d.att.Slice(p*H*D, T*H*D), l.wo, 1, H*D, C)
	xmid := m.xmid(i)
	kernels.Copy(be, xmid, x)
	be.Axpy(xmid, o, 1)
}

// Argmax is the index of the largest value, the first one on ties: greedy decoding's pick.
func Argmax[F kernels.Float](v []F) int32 {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return int32(best)
}
