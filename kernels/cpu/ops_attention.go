package cpu

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// Causal, document-masked grouped-query attention, flash style: the forward keeps only the
// logsumexp of each row's logits, never a T×T probability matrix, and the backward
// recomputes the probabilities from it. Logits and products are computed with MatMul on
// blocks of attnBlock query rows against the keys they can see, so the fast GEMM does the
// arithmetic and the causal upper triangle is mostly skipped.
//
// Legend: B sequences, T positions, H query heads, KV key/value heads, D head dim,
// G = H/KV query heads per key/value head. Row (b, t) of q is q[(b·T+t)·H·D:], head h at
// offset h·D inside it; k and v likewise with KV heads.

// attnBlock is the number of query rows whose logits are computed together.
const attnBlock = 64

// attnSpan returns, for sequence bi and each query block, the first key position any row
// of the block may attend to: the first position of any document present in the block.
// Keys before it are masked for every row of the block and are skipped. Documents need not
// be contiguous for this to hold.
func attnSpan(doc []int32, bi, t int) []int {
	seq := doc[bi*t : bi*t+t]
	lo := make([]int, (t+attnBlock-1)/attnBlock)
	for blk := range lo {
		i0 := blk * attnBlock
		rows := seq[i0:min(i0+attnBlock, t)]
		lo[blk] = i0
	scan:
		for s, d := range seq[:i0] {
			for _, r := range rows {
				if r == d {
					lo[blk] = s
					break scan
				}
			}
		}
	}
	return lo
}

// packHead copies head hh of the t rows of sequence bi from a strided [B*T, heads*D]
// buffer into dst [T, D].
func packHead[F kernels.Float](dst, src []F, bi, t, heads, hh, d int) {
	for r := range t {
		at := (bi*t+r)*heads*d + hh*d
		copy(dst[r*d:r*d+d], src[at:at+d])
	}
}

// addHead adds src [T, D] into head hh of sequence bi of a strided [B*T, heads*D] buffer.
func addHead[F kernels.Float](dst, src []F, bi, t, heads, hh, d int) {
	for r := range t {
		at := (bi*t+r)*heads*d + hh*d
		for j, v := range src[r*d : r*d+d] {
			dst[at+j] += v
		}
	}
}

// Attention: see kernels.Backend. Parallel over (b, h); each head of each sequence is
// independent.
func (be *Backend[F]) Attention(out, lse, q, k, v []F, doc []int32, b, t, h, kv, d int, scale F) {
	g := h / kv
	parallelFor(b*h, 1, func(lo, hi int) {
		qp, kp, vp, op := make([]F, t*d), make([]F, t*d), make([]F, t*d), make([]F, t*d)
		sc := make([]F, attnBlock*t)
		for task := lo; task < hi; task++ {
			bi, hh := task/h, task%h
			seq := doc[bi*t : bi*t+t]
			packHead(qp, q, bi, t, h, hh, d)
			packHead(kp, k, bi, t, kv, hh/g, d)
			packHead(vp, v, bi, t, kv, hh/g, d)
			for blk, klo := range attnSpan(doc, bi, t) {
				i0, i1 := blk*attnBlock, min(blk*attnBlock+attnBlock, t)
				nq, nk := i1-i0, i1-klo
				s := sc[:nq*nk]
				be.MatMul(s, qp[i0*d:i1*d], kp[klo*d:i1*d], nq, d, nk, false, true, false)
				for r := range nq {
					ti := i0 + r
					row := s[r*nk : r*nk+nk]
					mx := F(math.Inf(-1))
					for c := range row {
						if klo+c > ti || seq[klo+c] != seq[ti] {
							continue
						}
						row[c] *= scale
						mx = max(mx, row[c])
					}
					var sum F
					for c := range row {
						if klo+c > ti || seq[klo+c] != seq[ti] {
							row[c] = 0
							continue
						}
						row[c] = expF(row[c] - mx)
						sum += row[c]
					}
					inv := 1 / sum
					for c := range row {
						row[c] *= inv
					}
					lse[(bi*t+ti)*h+hh] = mx + F(math.Log(float64(sum)))
				}
				be.MatMul(op[i0*d:i1*d], s, vp[klo*d:i1*d], nq, nk, d, false, false, false)
			}
			for r := range t {
				at := (bi*t+r)*h*d + hh*d
				copy(out[at:at+d], op[r*d:r*d+d])
			}
		}
	})
}

// AttentionBackward: see kernels.Backend. With P the probabilities and
// δₜ = doutₜ·outₜ: dv_s += Σₜ P_ts·doutₜ, dS_ts = P_ts·(doutₜ·v_s - δₜ),
// dqₜ += scale·Σ_s dS_ts·k_s, dk_s += scale·Σₜ dS_ts·qₜ.
// Key/value rows collect from every query row and every head of their group, so the work
// is split by (b, kv head): each task owns its dk, dv rows and its heads' dq rows, and sums
// them in a fixed order.
func (be *Backend[F]) AttentionBackward(dq, dk, dv, dout, out, lse, q, k, v []F, doc []int32, b, t, h, kv, d int, scale F) {
	g := h / kv
	parallelFor(b*kv, 1, func(lo, hi int) {
		qp, kp, vp, dop := make([]F, t*d), make([]F, t*d), make([]F, t*d), make([]F, t*d)
		dqp, dkp, dvp, delta := make([]F, t*d), make([]F, t*d), make([]F, t*d), make([]F, t)
		p, ds := make([]F, attnBlock*t), make([]F, attnBlock*t)
		for task := lo; task < hi; task++ {
			bi, kh := task/kv, task%kv
			seq := doc[bi*t : bi*t+t]
			span := attnSpan(doc, bi, t)
			packHead(kp, k, bi, t, kv, kh, d)
			packHead(vp, v, bi, t, kv, kh, d)
			clear(dkp)
			clear(dvp)
			for hh := kh * g; hh < kh*g+g; hh++ {
				packHead(qp, q, bi, t, h, hh, d)
				packHead(dop, dout, bi, t, h, hh, d)
				for r := range t {
					at := (bi*t+r)*h*d + hh*d
					var s F
					for j, x := range dout[at : at+d] {
						s += x * out[at+j]
					}
					delta[r] = s
				}
				for blk, klo := range span {
					i0, i1 := blk*attnBlock, min(blk*attnBlock+attnBlock, t)
					nq, nk := i1-i0, i1-klo
					pb, db := p[:nq*nk], ds[:nq*nk]
					be.MatMul(pb, qp[i0*d:i1*d], kp[klo*d:i1*d], nq, d, nk, false, true, false)
					be.MatMul(db, dop[i0*d:i1*d], vp[klo*d:i1*d], nq, d, nk, false, true, false)
					for r := range nq {
						ti := i0 + r
						l := lse[(bi*t+ti)*h+hh]
						prow, drow := pb[r*nk:r*nk+nk], db[r*nk:r*nk+nk]
						for c := range prow {
							if klo+c > ti || seq[klo+c] != seq[ti] {
								prow[c], drow[c] = 0, 0
								continue
							}
							pv := expF(scale*prow[c] - l)
							prow[c] = pv
							drow[c] = scale * pv * (drow[c] - delta[ti])
						}
					}
					be.MatMul(dqp[i0*d:i1*d], db, kp[klo*d:i1*d], nq, nk, d, false, false, false)
					be.MatMul(dkp[klo*d:i1*d], db, qp[i0*d:i1*d], nk, nq, d, true, false, true)
					be.MatMul(dvp[klo*d:i1*d], pb, dop[i0*d:i1*d], nk, nq, d, true, false, true)
				}
				addHead(dq, dqp, bi, t, h, hh, d)
			}
			addHead(dk, dkp, bi, t, kv, kh, d)
			addHead(dv, dvp, bi, t, kv, kh, d)
		}
	})
}
