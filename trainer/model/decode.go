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
// them, per layer, as the attention takes them (Model.project: after RoPE and qk_norm on
// the layers that have them), and each Step computes only the new position's norms,
// projections, attention over the cache, feed-forward (dense or MoE) and logits:
// O(params + p·H·D) for position p instead of Forward's O(p·params + p²·H·D). It runs the
// model's own forward code on one row; only the attention is its own.
//
// The attention of one query row, through Backend ops (the Attention op computes every
// row of a causal sequence, p rows too many here): per key/value head g, the scores of its
// H/KV query heads against the cached keys are one MatMul, their softmax one Softmax, and
// the output one MatMul of the probabilities with the cached values. The
// cache therefore keeps each head's keys and values contiguous, [KV, T, D]. Image patches
// are not supported: a step takes a token id.

// Decoder is a KV cache over one sequence of up to seq_len positions, and the scratch of
// its attention. It borrows the model's activation buffers for the step's one row, so a
// Forward between two Steps is allowed but overwrites nothing the Decoder keeps.
type Decoder[F kernels.Float] struct {
	m            *Model[F]
	k, v         []kernels.Buf[F] // per layer [KV, T, D]: keys (after RoPE) and values of positions 0..Len()-1
	q, att       kernels.Buf[F]   // [H*D] the step's query and attention output
	kNew, vNew   kernels.Buf[F]   // [KV*D] the step's key and value before they are cached
	scores, prob kernels.Buf[F]   // [H/KV, T] one key/value head's logits and softmax
	batch        data.Batch       // the step's one-token batch
	n            int              // positions cached
}

// NewDecoder allocates a KV cache for sequences of up to seq_len positions in the model's
// backend: 2·L·KV·seq_len·D values, plus 2·(H/KV)·seq_len of attention scratch.
func (m *Model[F]) NewDecoder() *Decoder[F] {
	T, H, KV, D := m.Cfg.SeqLen, m.Cfg.NHeads, m.Cfg.NKVHeads, m.Cfg.HeadDim()
	R := H / KV
	alloc := func(n int) kernels.Buf[F] { return kernels.Alloc[F](m.be, n) }
	d := &Decoder[F]{m: m,
		q: alloc(H * D), att: alloc(H * D), kNew: alloc(KV * D), vNew: alloc(KV * D),
		scores: alloc(R * T), prob: alloc(R * T),
	}
	for range m.layers {
		d.k = append(d.k, alloc(KV*T*D))
		d.v = append(d.v, alloc(KV*T*D))
	}
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
// Step or Forward). They equal the last row of Forward's logits over the whole sequence up
// to float32 rounding: the softmax is computed in float64 here, and the GEMMs run on one
// row instead of many. It panics if the cache is full (Len() = seq_len) or token is
// outside the vocabulary.
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
// the cache, and its query attends to the cached positions 0..p, or with attention_chunk c
// on a RoPE layer to those of p's chunk, c·floor(p/c)..p.
func (d *Decoder[F]) attention(i int) {
	m := d.m
	l, a, be := m.layers[i], &m.acts[i], m.be
	C, H, KV, D, T := m.Cfg.DModel, m.Cfg.NHeads, m.Cfg.NKVHeads, m.Cfg.HeadDim(), m.Cfg.SeqLen
	R, p, n := H/KV, d.n, d.n+1
	x, h1, q := m.x[i].Slice(0, C), a.h1.Slice(0, C), d.q

	be.RMSNorm(h1, a.rstd1.Slice(0, 1), x, m.w(l.attnNorm), C, m.Cfg.NormEps)
	m.project(i, q, d.kNew, d.vNew, h1, 1)
	lo := 0 // the first position the query sees
	if c := m.Cfg.AttentionChunk; l.rope && c > 0 {
		lo = p / c * c
	}
	scores, prob := d.scores.Slice(0, R*(n-lo)), d.prob.Slice(0, R*(n-lo))
	for g := range KV {
		K, V := d.k[i].Slice(g*T*D, (g*T+n)*D), d.v[i].Slice(g*T*D, (g*T+n)*D) // [n, D]
		kernels.Copy(be, K.From(p*D), d.kNew.Slice(g*D, (g+1)*D))
		kernels.Copy(be, V.From(p*D), d.vNew.Slice(g*D, (g+1)*D))
		K, V = K.From(lo*D), V.From(lo*D)
		be.MatMul(scores, q.Slice(g*R*D, (g+1)*R*D), K, R, D, n-lo, false, true, false) // [R, n-lo]
		be.Scale(scores, m.AttnScale)
		be.Softmax(prob, scores, R, n-lo)
		be.MatMul(d.att.Slice(g*R*D, (g+1)*R*D), prob, V, R, n-lo, D, false, false, false)
	}
	o := m.g.tmp.Slice(0, C)
	m.linear(o, d.att, l.wo, 1, H*D, C)
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
