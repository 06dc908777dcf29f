package backendtest

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// attnShape is one attention case: B sequences of T positions, H query heads, KV
// key/value heads, head dim D, and how the documents are laid out.
type attnShape struct {
	b, t, h, kv, d int
	docs           string // "one": one document; "runs": documents in runs; "mixed": ids at random
}

// attnShapes: empty, one position, grouped and plain heads, sequences longer than a block
// of 64 query rows, head dims that are not multiples of 16, documents changing inside a
// sequence (the same ids reused in the next sequence, which must not see them) and
// documents that are not contiguous.
var attnShapes = []attnShape{
	{0, 5, 2, 1, 4, "runs"}, {1, 1, 1, 1, 4, "one"}, {2, 13, 4, 2, 8, "runs"}, {1, 70, 2, 1, 6, "runs"},
	{2, 37, 3, 3, 18, "mixed"}, {1, 20, 2, 2, 16, "one"},
}

// attnDocs returns the document of each position.
func attnDocs[F kernels.Float](e *env[F], s attnShape) []int32 {
	doc := make([]int32, s.b*s.t)
	for bi := range s.b {
		seq, id := doc[bi*s.t:(bi+1)*s.t], int32(0)
		for i := range seq {
			switch s.docs {
			case "runs":
				if i > 0 && e.rng.IntN(6) == 0 {
					id++
				}
			case "mixed":
				id = int32(e.rng.IntN(3))
			}
			seq[i] = id
		}
	}
	return doc
}

// attnRef is the float64 reference of one attention case: per (sequence, head, query t)
// the keys s it sees and their probabilities.
type attnRef struct {
	attnShape
	q, k, v []float64
	doc     []int32
	scale   float64
}

// at is the offset of head hh of row t of sequence bi in a [B*T, heads*D] buffer.
func (r *attnRef) at(bi, t, heads, hh int) int { return (bi*r.t+t)*heads*r.d + hh*r.d }

// logits returns, for query t of head hh of sequence bi, the keys it sees (s <= t, same
// document), their logits scale·q·k, and L = scale·Σ|q||k| of each, the magnitude at which
// a logit's rounding errors arise.
func (r *attnRef) logits(bi, hh, t int) (keys []int, l, mag []float64) {
	g := r.h / r.kv
	for s := 0; s <= t; s++ {
		if r.doc[bi*r.t+s] != r.doc[bi*r.t+t] {
			continue
		}
		qa, ka := r.at(bi, t, r.h, hh), r.at(bi, s, r.kv, hh/g)
		var dot, m float64
		for j := range r.d {
			dot += r.q[qa+j] * r.k[ka+j]
			m += math.Abs(r.q[qa+j] * r.k[ka+j])
		}
		keys, l, mag = append(keys, s), append(l, r.scale*dot), append(mag, math.Abs(r.scale)*m)
	}
	return keys, l, mag
}

// logSumExp is log Σ exp(l), NaN if any l is.
func logSumExp(l []float64) float64 {
	mx := math.Inf(-1)
	for _, x := range l {
		if x != x {
			return x
		}
		mx = max(mx, x)
	}
	var s float64
	for _, x := range l {
		s += math.Exp(x - mx)
	}
	return mx + math.Log(s)
}

func checkAttention[F kernels.Float](e *env[F]) {
	for i, s := range attnShapes {
		e.begin("B=%d T=%d H=%d KV=%d D=%d docs=%s", s.b, s.t, s.h, s.kv, s.d, s.docs)
		attentionCase(e, s, false)
		if i == 2 {
			e.begin("NaN in one query row, B=%d T=%d H=%d KV=%d D=%d", s.b, s.t, s.h, s.kv, s.d)
			attentionCase(e, s, true)
		}
	}
}

// attentionCase checks out and lse; with nan, query head 1 of position 5 of the last
// sequence is NaN, which must make that row's output and lse NaN and nothing else.
func attentionCase[F kernels.Float](e *env[F], s attnShape, nan bool) {
	e.r.Helper()
	n := s.b * s.t
	q, k, v := uniform(e, n*s.h*s.d, -1, 1), uniform(e, n*s.kv*s.d, -1, 1), uniform(e, n*s.kv*s.d, -1, 1)
	doc := attnDocs(e, s)
	if nan {
		q[((s.b-1)*s.t+5)*s.h*s.d+s.d+2] = F(math.NaN())
	}
	scale := F(1 / math.Sqrt(float64(s.d)))
	ob, lb := out(e, "out", unwritten[F](n*s.h*s.d)), out(e, "lse", unwritten[F](n*s.h))
	e.be.Attention(ob, lb, in(e, "q", q), in(e, "k", k), in(e, "v", v), in(e, "doc", doc), s.b, s.t, s.h, s.kv, s.d, scale)

	r := &attnRef{s, to64(q), to64(k), to64(v), doc, float64(scale)}
	wo, mo := make([]float64, n*s.h*s.d), make([]float64, n*s.h*s.d)
	wl, ml := make([]float64, n*s.h), make([]float64, n*s.h)
	g := s.h / s.kv
	for bi := range s.b {
		for hh := range s.h {
			for t := range s.t {
				keys, l, lm := r.logits(bi, hh, t)
				lse, maxL := logSumExp(l), 0.0
				for _, x := range lm {
					maxL = max(maxL, x)
				}
				row := (bi*s.t+t)*s.h + hh
				wl[row], ml[row] = lse, 1+math.Abs(lse)+maxL
				oa := r.at(bi, t, s.h, hh)
				for i, key := range keys {
					p := math.Exp(l[i] - lse)
					va := r.at(bi, key, s.kv, hh/g)
					for j := range s.d {
						wo[oa+j] += p * r.v[va+j]
						// p's error grows with its logit's and lse's magnitudes.
						mo[oa+j] += p * math.Abs(r.v[va+j]) * (1 + lm[i] + ml[row])
					}
				}
			}
		}
	}
	near(e, "lse", get(e, lb), wl, ml, e.tol(s.t))
	near(e, "out", get(e, ob), wo, mo, e.tol(s.t))
	e.done()
}

func checkAttentionBackward[F kernels.Float](e *env[F]) {
	for _, s := range attnShapes {
		e.begin("B=%d T=%d H=%d KV=%d D=%d docs=%s", s.b, s.t, s.h, s.kv, s.d, s.docs)
		attentionBackwardCase(e, s)
	}
}

// attentionBackwardCase checks dq, dk and dv, given the reference's out and lse. With P
// the probabilities and δₜ = doutₜ·outₜ: dv_s += Σₜ P_ts·doutₜ,
// dS_ts = P_ts·(doutₜ·v_s - δₜ), dqₜ += scale·Σ_s dS_ts·k_s, dk_s += scale·Σₜ dS_ts·qₜ.
func attentionBackwardCase[F kernels.Float](e *env[F], s attnShape) {
	e.r.Helper()
	n, hd, kd := s.b*s.t, s.h*s.d, s.kv*s.d
	q, k, v := uniform(e, n*hd, -1, 1), uniform(e, n*kd, -1, 1), uniform(e, n*kd, -1, 1)
	dout, doc := uniform(e, n*hd, -1, 1), attnDocs(e, s)
	scale := F(1 / math.Sqrt(float64(s.d)))
	r := &attnRef{s, to64(q), to64(k), to64(v), doc, float64(scale)}

	// The forward's out and lse, in F, as the backward receives them.
	o, lse := make([]F, n*hd), make([]F, n*s.h)
	g := s.h / s.kv
	for bi := range s.b {
		for hh := range s.h {
			for t := range s.t {
				keys, l, _ := r.logits(bi, hh, t)
				m := logSumExp(l)
				lse[(bi*s.t+t)*s.h+hh] = F(m)
				oa := r.at(bi, t, s.h, hh)
				acc := make([]float64, s.d)
				for i, key := range keys {
					va := r.at(bi, key, s.kv, hh/g)
					for j := range s.d {
						acc[j] += math.Exp(l[i]-m) * r.v[va+j]
					}
				}
				for j := range s.d {
					o[oa+j] = F(acc[j])
				}
			}
		}
	}

	dq, dk, dv := uniform(e, n*hd, -1, 1), uniform(e, n*kd, -1, 1), uniform(e, n*kd, -1, 1)
	dqb, dkb, dvb := out(e, "dq", dq), out(e, "dk", dk), out(e, "dv", dv)
	dqb2, dkb2, dvb2 := out(e, "dq (again)", dq), out(e, "dk (again)", dk), out(e, "dv (again)", dv)
	ins := []kernels.Buf[F]{in(e, "dout", dout), in(e, "out", o), in(e, "lse", lse), in(e, "q", q), in(e, "k", k), in(e, "v", v)}
	docb := in(e, "doc", doc)
	e.be.AttentionBackward(dqb, dkb, dvb, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], docb, s.b, s.t, s.h, s.kv, s.d, scale)
	e.be.AttentionBackward(dqb2, dkb2, dvb2, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], docb, s.b, s.t, s.h, s.kv, s.d, scale)
	sameRuns(e, "dq", dqb, dqb2)
	sameRuns(e, "dk", dkb, dkb2)
	sameRuns(e, "dv", dvb, dvb2)

	wq, wk, wv := to64(dq), to64(dk), to64(dv)
	mq, mk, mv := absOf(wq), absOf(wk), absOf(wv)
	sc := float64(scale)
	for bi := range s.b {
		for hh := range s.h {
			for t := range s.t {
				keys, l, lm := r.logits(bi, hh, t)
				row := (bi*s.t+t)*s.h + hh
				lt := float64(lse[row])
				oa := r.at(bi, t, s.h, hh)
				var delta, mdelta float64
				for j := range s.d {
					delta += float64(dout[oa+j]) * float64(o[oa+j])
					mdelta += math.Abs(float64(dout[oa+j]) * float64(o[oa+j]))
				}
				for i, key := range keys {
					p := math.Exp(l[i] - lt)
					lam := 1 + lm[i] + math.Abs(lt) // p's relative error, in eps
					ka := r.at(bi, key, s.kv, hh/g)
					var dp, mdp float64
					for j := range s.d {
						dp += float64(dout[oa+j]) * r.v[ka+j]
						mdp += math.Abs(float64(dout[oa+j]) * r.v[ka+j])
					}
					ds, mds := p*(dp-delta), p*lam*(mdp+mdelta)
					for j := range s.d {
						wv[ka+j] += p * float64(dout[oa+j])
						mv[ka+j] += p * lam * math.Abs(float64(dout[oa+j]))
						wq[oa+j] += sc * ds * r.k[ka+j]
						mq[oa+j] += math.Abs(sc) * mds * math.Abs(r.k[ka+j])
						wk[ka+j] += sc * ds * r.q[oa+j]
						mk[ka+j] += math.Abs(sc) * mds * math.Abs(r.q[oa+j])
					}
				}
			}
		}
	}
	near(e, "dv", get(e, dvb), wv, mv, e.tol(s.t))
	near(e, "dq", get(e, dqb), wq, mq, e.tol(s.t))
	near(e, "dk", get(e, dkb), wk, mk, e.tol(s.t))
	e.done()
}
