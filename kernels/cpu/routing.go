package cpu

// A mixture of experts' routing: the top-k choice with its layout of slots by expert, and
// the router logits' gradient. Both take O(N·E·k) scalar steps, small beside the experts'
// GEMMs, and run as one plain loop in token order.

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// softmax64Row writes out = softmax(row) in float64: the max subtracted, each exp rounded
// to F, then divided by the float64 sum of the exps (Route's probabilities, Softmax).
func softmax64Row[F kernels.Float](out, row []F) {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = max(mx, float64(v))
	}
	var sum float64
	for j, v := range row {
		p := math.Exp(float64(v) - mx)
		out[j] = F(p)
		sum += p
	}
	for j := range row {
		out[j] = F(float64(out[j]) / sum)
	}
}

// Softmax: see kernels.Backend. Its rows are few and short (one query's heads over a KV
// cache): a plain loop.
func (*Backend[F]) Softmax(out, x kernels.Buf[F], rows, cols int) {
	o, xs := out.Host(), x.Host()
	for i := range rows {
		softmax64Row(o[i*cols:i*cols+cols], xs[i*cols:i*cols+cols])
	}
}

// Route: see kernels.Backend. slotRow holds each slot's expert until the layout is known.
func (*Backend[F]) Route(probs, gate, rowGate kernels.Buf[F], slotRow, rowTok kernels.Buf[int32], counts []int, r kernels.Buf[F], n, e, k int) {
	ps, gs, rg, sel, rt, rs := probs.Host(), gate.Host(), rowGate.Host(), slotRow.Host(), rowTok.Host(), r.Host()
	clear(counts[:e])
	for t := range n {
		row := rs[t*e : t*e+e]
		softmax64Row(ps[t*e:t*e+e], row)
		for j := range k {
			best := -1
		next:
			for x, v := range row {
				for _, c := range sel[t*k : t*k+j] {
					if int(c) == x {
						continue next
					}
				}
				if best < 0 || v > row[best] {
					best = x
				}
			}
			sel[t*k+j] = int32(best)
			gs[t*k+j] = F(1 / (1 + math.Exp(-float64(row[best]))))
			counts[best]++
		}
	}
	// Each expert's next free row, from the prefix sums of the counts; then every slot, in
	// order, takes its expert's next row.
	next := take[[]int]()
	defer release(next)
	if cap(*next) < e {
		*next = make([]int, e)
	}
	cursor := (*next)[:e]
	row := 0
	for x := range e {
		cursor[x] = row
		row += counts[x]
	}
	for s := range n * k {
		x := sel[s]
		p := cursor[x]
		cursor[x]++
		rt[p], rg[p] = int32(s/k), gs[s]
		sel[s] = int32(p)
	}
}

// RouterBackward: see kernels.Backend.
func (*Backend[F]) RouterBackward(dr, probs, dgate, rowGate kernels.Buf[F], rowTok kernels.Buf[int32], start []int, load []float64, c float64, n, e int) {
	d, ps, dg, rg, rt := dr.Host(), probs.Host(), dgate.Host(), rowGate.Host(), rowTok.Host()
	clear(d[:n*e])
	for x := range e {
		for p := start[x]; p < start[x+1]; p++ {
			gt := rg[p]
			d[int(rt[p])*e+x] += dg[p] * gt * (1 - gt) // sigmoid'
		}
	}
	if c == 0 {
		return
	}
	for t := range n {
		p := ps[t*e : t*e+e]
		var dot float64
		for x, v := range p {
			dot += float64(v) * load[x]
		}
		for x, v := range p {
			d[t*e+x] += F(c * float64(v) * (load[x] - dot))
		}
	}
}
