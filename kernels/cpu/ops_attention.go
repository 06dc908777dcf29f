package cpu

import "math"

// Causal, document-masked grouped-query attention, flash style: the forward keeps only the
// logsumexp of each row's logits, never a T×T probability matrix, and the backward
// recomputes the probabilities from it.
//
// Legend: B sequences, T positions, H query heads, KV key/value heads, D head dim,
// G = H/KV query heads per key/value head. Row (b, t) of q is q[(b·T+t)·H·D:], head h at
// offset h·D inside it; k and v likewise with KV heads.

// Attention: see kernels.Backend. Parallel over (b, h, t) rows; each row is independent.
func (*Backend[F]) Attention(out, lse, q, k, v []F, doc []int32, b, t, h, kv, d int, scale F) {
	g := h / kv
	parallelFor(b*h*t, 4, func(lo, hi int) {
		p := make([]F, t) // this chunk's row of logits, then probabilities
		for r := lo; r < hi; r++ {
			bi, hh, ti := r/(h*t), r/t%h, r%t
			row := bi*t + ti
			qr := q[row*h*d+hh*d : row*h*d+hh*d+d]
			kh := hh / g
			seq := bi * t
			mx := F(math.Inf(-1))
			for s := 0; s <= ti; s++ {
				if doc[seq+s] != doc[row] {
					continue
				}
				kr := k[(seq+s)*kv*d+kh*d : (seq+s)*kv*d+kh*d+d]
				var dot F
				for j, x := range qr {
					dot += x * kr[j]
				}
				p[s] = scale * dot
				mx = max(mx, p[s])
			}
			var sum F
			for s := 0; s <= ti; s++ {
				if doc[seq+s] != doc[row] {
					continue
				}
				p[s] = F(math.Exp(float64(p[s] - mx)))
				sum += p[s]
			}
			or := out[row*h*d+hh*d : row*h*d+hh*d+d]
			clear(or)
			inv := 1 / sum
			for s := 0; s <= ti; s++ {
				if doc[seq+s] != doc[row] {
					continue
				}
				w := p[s] * inv
				vr := v[(seq+s)*kv*d+kh*d : (seq+s)*kv*d+kh*d+d]
				for j, x := range vr {
					or[j] += w * x
				}
			}
			lse[row*h+hh] = mx + F(math.Log(float64(sum)))
		}
	})
}

// AttentionBackward: see kernels.Backend. With P the probabilities and
// δₜ = doutₜ·outₜ: dv_s += Σₜ P_ts·doutₜ, dS_ts = P_ts·(doutₜ·v_s - δₜ),
// dqₜ += scale·Σ_s dS_ts·k_s, dk_s += scale·Σₜ dS_ts·qₜ.
// Key/value rows collect from every query row and every head of their group, so the work
// is split by (b, kv head): each task owns its dk, dv rows and its heads' dq rows, and sums
// them in a fixed order.
func (*Backend[F]) AttentionBackward(dq, dk, dv, dout, out, lse, q, k, v []F, doc []int32, b, t, h, kv, d int, scale F) {
	g := h / kv
	parallelFor(b*kv, 1, func(lo, hi int) {
		for task := lo; task < hi; task++ {
			bi, kh := task/kv, task%kv
			seq := bi * t
			for hh := kh * g; hh < kh*g+g; hh++ {
				for ti := range t {
					row := seq + ti
					at := row*h*d + hh*d
					qr, dor, dqr := q[at:at+d], dout[at:at+d], dq[at:at+d]
					var delta F
					for j, x := range dor {
						delta += x * out[at+j]
					}
					l := lse[row*h+hh]
					for s := 0; s <= ti; s++ {
						if doc[seq+s] != doc[row] {
							continue
						}
						ks := (seq+s)*kv*d + kh*d
						kr, vr := k[ks:ks+d], v[ks:ks+d]
						var dot, dp F
						for j, x := range qr {
							dot += x * kr[j]
							dp += dor[j] * vr[j]
						}
						p := F(math.Exp(float64(scale*dot - l)))
						ds := scale * p * (dp - delta)
						dkr, dvr := dk[ks:ks+d], dv[ks:ks+d]
						for j := range d {
							dvr[j] += p * dor[j]
							dqr[j] += ds * kr[j]
							dkr[j] += ds * qr[j]
						}
					}
				}
			}
		}
	})
}
