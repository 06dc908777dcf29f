package cpu

import (
	"math"
	"runtime"

	"github.com/herdml/herd/kernels"
)

// Causal, document-masked grouped-query attention, flash style: the forward keeps only the
// logsumexp of each row's logits, never a T×T probability matrix, and the backward
// recomputes the probabilities from it. Logits and products are computed on blocks of
// attnBlock query rows against the keys they can see, so the causal upper triangle is
// mostly skipped and a block's logits stay in cache. float32 runs the products on the GEMM
// micro-kernel (attention32.go); this file's path, with plain matrix products per block,
// is the reference that float64 (the gradient checks) runs.
//
// Legend: B sequences, T positions, H query heads, KV key/value heads, D head dim,
// G = H/KV query heads per key/value head. Row (b, t) of q is q[(b·T+t)·H·D:], head h at
// offset h·D inside it; k and v likewise with KV heads.

// attnBlock is the number of query rows whose logits are computed together.
const attnBlock = 64

// attnSpan returns the first key position any query row in [i0, i1) of a sequence with
// documents seq may attend to: the first position of any document present in the rows.
// Keys before it are masked for every row of the block and are skipped. Documents need
// not be contiguous for this to hold.
func attnSpan(seq []int32, i0, i1 int) int {
	rows := seq[i0:i1]
	for s, d := range seq[:i0] {
		for _, r := range rows {
			if r == d {
				return s
			}
		}
	}
	return i0
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
func addHead[F kernels.Float](im *gemmImpl, dst, src []F, bi, t, heads, hh, d int) {
	for r := range t {
		at := (bi*t+r)*heads*d + hh*d
		axpyTo(im, dst[at:at+d], src[r*d:r*d+d], 1)
	}
}

// attention is kernels.Backend's Attention on the buffers' slices. Parallel over (b, h);
// each head of each sequence is independent, so each runs its GEMMs on one thread.
func (be *Backend[F]) attention(out, lse, q, k, v []F, doc []int32, b, t, h, kv, d int, scale F) {
	parallelChunks(b*h, runtime.GOMAXPROCS(0), attention[F]{be, out, lse, q, k, v, doc, t, h, kv, d, scale})
}

type attention[F kernels.Float] struct {
	be                *Backend[F]
	out, lse, q, k, v []F
	doc               []int32
	t, h, kv, d       int
	scale             F
}

// run handles (sequence, head) pairs [lo, hi), task = b·H + h.
func (a *attention[F]) run(lo, hi int) {
	if q32, ok := any(a.q).([]float32); ok {
		attentionForward32(a.be.impl(), as32(a.out), as32(a.lse), q32, as32(a.k), as32(a.v), a.doc, a.t, a.h, a.kv, a.d,
			float32(a.scale), lo, hi)
		return
	}
	t, h, d, im := a.t, a.h, a.d, a.be.impl()
	buf, firstBuf := getBuf[F](4*t*d+attnBlock*t), getBuf[int32](t)
	defer putBuf(buf)
	defer putBuf(firstBuf)
	qp, kp, vp, op, sc := (*buf)[:t*d], (*buf)[t*d:2*t*d], (*buf)[2*t*d:3*t*d], (*buf)[3*t*d:4*t*d], (*buf)[4*t*d:]
	first := *firstBuf
	g := h / a.kv
	for task := lo; task < hi; task++ {
		bi, hh := task/h, task%h
		seq := a.doc[bi*t : bi*t+t]
		docRuns(first, seq)
		packHead(qp, a.q, bi, t, h, hh, d)
		packHead(kp, a.k, bi, t, a.kv, hh/g, d)
		packHead(vp, a.v, bi, t, a.kv, hh/g, d)
		for blk := range (t + attnBlock - 1) / attnBlock {
			i0, i1 := blk*attnBlock, min(blk*attnBlock+attnBlock, t)
			klo := attnSpan(seq, i0, i1)
			nq, nk := i1-i0, i1-klo
			s := sc[:nq*nk]
			serialMatMul(s, qp[i0*d:i1*d], kp[klo*d:i1*d], nq, d, nk, false, true, false)
			for r := range nq {
				a.lse[(bi*t+i0+r)*h+hh] = softmaxRow(im, s[r*nk:r*nk+nk], first, seq, klo, i0+r, a.scale)
			}
			serialMatMul(op[i0*d:i1*d], s, vp[klo*d:i1*d], nq, nk, d, false, false, false)
		}
		for r := range t {
			at := (bi*t+r)*h*d + hh*d
			copy(a.out[at:at+d], op[r*d:r*d+d])
		}
	}
}

// softmaxRow turns row, the logits of query ti against keys k0, k0+1, ... (one per
// column), into its attention probabilities: scaled, masked to the keys it may see (k0..ti
// of its own document: the run first[ti]..ti when the documents are runs, else a test per
// key), softmaxed, and zero elsewhere. It returns the row's log-sum-exp, which the
// backward pass needs. Both the float32 and the generic attention use it.
func softmaxRow[F kernels.Float](im *gemmImpl, row []F, first []int32, seq []int32, k0, ti int, scale F) (lse F) {
	c0, w := max(int(first[ti]), k0)-k0, ti-k0+1
	live := row[c0:w]
	var mx F
	if first[ti] >= 0 {
		mx = scaleMax(im, live, scale)
	} else {
		mx = maskLogits(live, seq[k0:], seq[ti], scale)
	}
	sum := expShift(im, live, mx)
	scaleBy(im, live, 1/sum)
	clear(row[:c0])
	clear(row[w:])
	return mx + F(math.Log(float64(sum)))
}

// softmaxGradRow is softmaxRow's backward for one query: p holds the row's logits and dp
// the gradient of its probabilities (dout·vᵀ); it recomputes the probabilities into p from
// the forward's log-sum-exp lse, and writes the gradient of the logits into dp, given
// outputDots writes delta[r] = dout_r·out_r for the t rows of head hh of sequence bi
// (dout and out [B·T, h·d]): each row's δ of the softmax backward.
func outputDots[F kernels.Float](im *gemmImpl, delta, dout, out []F, bi, t, h, hh, d int) {
	for r := range t {
		at := (bi*t+r)*h*d + hh*d
		delta[r] = dot2(im, dout[at:at+d], out[at:at+d])
	}
}

// delta = dout·out for the row; both are zero outside the keys the query sees.
func softmaxGradRow[F kernels.Float](im *gemmImpl, p, dp []F, first []int32, seq []int32, k0, ti int, scale, lse, delta F) {
	c0, w := max(int(first[ti]), k0)-k0, ti-k0+1
	live := p[c0:w]
	if first[ti] >= 0 {
		scaleMax(im, live, scale)
	} else {
		maskLogits(live, seq[k0:], seq[ti], scale)
	}
	expShift(im, live, lse)
	softmaxGrad(im, dp[c0:w], live, delta, scale)
	clear(p[:c0])
	clear(p[w:])
	clear(dp[:c0])
	clear(dp[w:])
}

// docRuns sets first[t] to the first position of the run of equal documents that holds
// position t of a sequence with documents seq, when each document is one run (the
// documents of successive runs increase, as the packer numbers them): a query then sees
// exactly the keys first[t]..t, and the mask needs no test per key. Otherwise it sets
// every first[t] to -1, and the queries test each key's document (maskLogits).
func docRuns(first, seq []int32) {
	for t, d := range seq {
		switch {
		case t == 0 || d != seq[t-1]:
			if t > 0 && d < seq[t-1] {
				for i := range first[:len(seq)] {
					first[i] = -1
				}
				return
			}
			first[t] = int32(t)
		default:
			first[t] = first[t-1]
		}
	}
}

// maskLogits scales, in place, the logits of one query row of document doc against keys
// whose documents are keyDoc, sets those of other documents to -Inf (so that their
// exponential is 0), and returns the largest.
func maskLogits[F kernels.Float](row []F, keyDoc []int32, doc int32, scale F) F {
	mx := F(negInf)
	for c, x := range row {
		if keyDoc[c] != doc {
			row[c] = F(negInf)
			continue
		}
		row[c] = x * scale
		mx = max(mx, row[c])
	}
	return mx
}

// serialMatMul is refMatMul on the calling goroutine.
func serialMatMul[F kernels.Float](c, a, b []F, m, k, n int, transA, transB, accumulate bool) {
	t := refGEMM[F]{c, a, b, m, k, n, transA, transB, accumulate}
	t.run(0, m)
}

// attentionBackward is kernels.Backend's AttentionBackward on the buffers' slices. With P
// the probabilities and δₜ = doutₜ·outₜ: dv_s += Σₜ P_ts·doutₜ, dS_ts = P_ts·(doutₜ·v_s -
// δₜ), dqₜ += scale·Σ_s dS_ts·k_s, dk_s += scale·Σₜ dS_ts·qₜ. Key/value rows collect from
// every query row and every head of their group, so the work is split by (b, kv head): each
// task owns its dk, dv rows and its heads' dq rows, and sums them in a fixed order.
func (be *Backend[F]) attentionBackward(dq, dk, dv, dout, out, lse, q, k, v []F, doc []int32, b, t, h, kv, d int, scale F) {
	parallelChunks(b*kv, runtime.GOMAXPROCS(0), attentionBackward[F]{be, dq, dk, dv, dout, out, lse, q, k, v, doc, t, h, kv, d, scale})
}

type attentionBackward[F kernels.Float] struct {
	be                                  *Backend[F]
	dq, dk, dv, dout, out, lse, q, k, v []F
	doc                                 []int32
	t, h, kv, d                         int
	scale                               F
}

// run handles (sequence, kv head) pairs [lo, hi), task = b·KV + kv head.
func (a *attentionBackward[F]) run(lo, hi int) {
	if q32, ok := any(a.q).([]float32); ok {
		attentionBackward32(a.be.impl(), as32(a.dq), as32(a.dk), as32(a.dv), as32(a.dout), as32(a.out), as32(a.lse), q32,
			as32(a.k), as32(a.v), a.doc, a.t, a.h, a.kv, a.d, float32(a.scale), lo, hi)
		return
	}
	t, h, kv, d, scale, im := a.t, a.h, a.kv, a.d, a.scale, a.be.impl()
	buf, firstBuf := getBuf[F](7*t*d+t+2*attnBlock*t), getBuf[int32](t)
	defer putBuf(buf)
	defer putBuf(firstBuf)
	first := *firstBuf
	sl := *buf
	next := func(n int) []F { s := sl[:n]; sl = sl[n:]; return s }
	qp, kp, vp, dop := next(t*d), next(t*d), next(t*d), next(t*d)
	dqp, dkp, dvp, delta := next(t*d), next(t*d), next(t*d), next(t)
	p, ds := next(attnBlock*t), next(attnBlock*t)
	g := h / kv
	for task := lo; task < hi; task++ {
		bi, kh := task/kv, task%kv
		seq := a.doc[bi*t : bi*t+t]
		docRuns(first, seq)
		packHead(kp, a.k, bi, t, kv, kh, d)
		packHead(vp, a.v, bi, t, kv, kh, d)
		clear(dkp)
		clear(dvp)
		for hh := kh * g; hh < kh*g+g; hh++ {
			packHead(qp, a.q, bi, t, h, hh, d)
			packHead(dop, a.dout, bi, t, h, hh, d)
			outputDots(im, delta, a.dout, a.out, bi, t, h, hh, d)
			for blk := range (t + attnBlock - 1) / attnBlock {
				i0, i1 := blk*attnBlock, min(blk*attnBlock+attnBlock, t)
				klo := attnSpan(seq, i0, i1)
				nq, nk := i1-i0, i1-klo
				pb, db := p[:nq*nk], ds[:nq*nk]
				serialMatMul(pb, qp[i0*d:i1*d], kp[klo*d:i1*d], nq, d, nk, false, true, false)
				serialMatMul(db, dop[i0*d:i1*d], vp[klo*d:i1*d], nq, d, nk, false, true, false)
				for r := range nq {
					ti := i0 + r
					softmaxGradRow(im, pb[r*nk:r*nk+nk], db[r*nk:r*nk+nk], first, seq, klo, ti, scale, a.lse[(bi*t+ti)*h+hh], delta[ti])
				}
				serialMatMul(dqp[i0*d:i1*d], db, kp[klo*d:i1*d], nq, nk, d, false, false, false)
				serialMatMul(dkp[klo*d:i1*d], db, qp[i0*d:i1*d], nk, nq, d, true, false, true)
				serialMatMul(dvp[klo*d:i1*d], pb, dop[i0*d:i1*d], nk, nq, d, true, false, true)
			}
			addHead(im, a.dq, dqp, bi, t, h, hh, d)
		}
		addHead(im, a.dk, dkp, bi, t, kv, kh, d)
		addHead(im, a.dv, dvp, bi, t, kv, kh, d)
	}
}
