package backendtest

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// routeShape is one routing case: N tokens, E experts, top k, and the logits: "ties"
// draws them from four values so that rows have equal logits, "idle" also gives the
// upper half of the experts a logit no token's top k reaches (they receive no token).
type routeShape struct {
	n, e, k int
	logits  string
}

var routeShapes = []routeShape{
	{0, 4, 1, "ties"}, {1, 1, 1, "ties"}, {9, 4, 2, "ties"}, {33, 8, 1, "idle"}, {20, 16, 3, "random"},
	{5, 3, 3, "ties"}, {12, 6, 2, "idle"},
}

// routeLogits returns router logits [N, E] for s; the first row is all equal when N > 1.
func routeLogits[F kernels.Float](e *env[F], s routeShape) []F {
	r := uniform(e, s.n*s.e, -3, 3)
	if s.logits == "random" {
		return r
	}
	for i := range r {
		r[i] = F([]float64{-1, 0, 0.5, 2}[e.rng.IntN(4)])
		if s.logits == "idle" && i%s.e >= s.e/2 {
			r[i] = -5
		}
	}
	if s.n > 1 {
		for j := range s.e {
			r[j] = 0.5
		}
	}
	return r
}

// routing is the reference of Route.
type routing struct {
	probs, gate, rowGate []float64
	slotRow, rowTok      []int32
	counts               []int
	pmag                 []float64 // magnitude of each probability's error: p·(1 + |r - max|)
}

// refRoute is Route from its doc comment: softmax probabilities, top k by repeated
// selection of the largest logit not picked yet (ties to the lower index), sigmoid gates,
// and the slots laid out by expert, in slot order within an expert.
func refRoute(r []float64, n, e, k int) routing {
	rt := routing{
		probs: make([]float64, n*e), pmag: make([]float64, n*e), gate: make([]float64, n*k),
		rowGate: make([]float64, n*k), slotRow: make([]int32, n*k), rowTok: make([]int32, n*k),
		counts: make([]int, e),
	}
	expert := make([]int, n*k)
	for t := range n {
		row := r[t*e : t*e+e]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = max(mx, v)
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(v - mx)
		}
		for x, v := range row {
			rt.probs[t*e+x] = math.Exp(v-mx) / sum
			rt.pmag[t*e+x] = rt.probs[t*e+x] * (1 + math.Abs(v-mx))
		}
		picked := make([]bool, e)
		for j := range k {
			best := -1
			for x, v := range row {
				if !picked[x] && (best < 0 || v > row[best]) {
					best = x
				}
			}
			picked[best] = true
			expert[t*k+j] = best
			rt.gate[t*k+j] = sigmoid(row[best])
			rt.counts[best]++
		}
	}
	row := 0
	for x := range e {
		for s, ex := range expert {
			if ex == x {
				rt.slotRow[s], rt.rowTok[row], rt.rowGate[row] = int32(row), int32(s/k), rt.gate[s]
				row++
			}
		}
	}
	return rt
}

func checkRoute[F kernels.Float](e *env[F]) {
	for _, s := range routeShapes {
		e.begin("N=%d E=%d k=%d logits=%s", s.n, s.e, s.k, s.logits)
		r := routeLogits(e, s)
		nk := s.n * s.k
		pb, gb, rgb := out(e, "probs", unwritten[F](s.n*s.e)), out(e, "gate", unwritten[F](nk)), out(e, "rowGate", unwritten[F](nk))
		srb, rtb := out(e, "slotRow", unwritten[int32](nk)), out(e, "rowTok", unwritten[int32](nk))
		counts := make([]int, s.e)
		for i := range counts {
			counts[i] = 99 // Route writes every count
		}
		e.be.Route(pb, gb, rgb, srb, rtb, counts, in(e, "r", r), s.n, s.e, s.k)
		want := refRoute(to64(r), s.n, s.e, s.k)
		for x, cnt := range counts {
			if cnt != want.counts[x] {
				e.errorf("counts = %v, want %v", counts, want.counts)
				break
			}
		}
		same(e, "slotRow", get(e, srb), want.slotRow)
		same(e, "rowTok", get(e, rtb), want.rowTok)
		near(e, "gate", get(e, gb), want.gate, want.gate, e.tol(1))
		near(e, "rowGate", get(e, rgb), want.rowGate, want.rowGate, e.tol(1))
		near(e, "probs", get(e, pb), want.probs, want.pmag, e.tol(s.e))
		e.done()
	}
}

// checkSoftmax compares Softmax with refRoute's probabilities, on routing's shapes (ties,
// rows of equal values) and on longer rows such as a KV cache's.
func checkSoftmax[F kernels.Float](e *env[F]) {
	shapes := append(routeShapes[:len(routeShapes):len(routeShapes)], routeShape{3, 257, 1, "random"}, routeShape{2, 1000, 1, "random"})
	for _, s := range shapes {
		e.begin("rows=%d cols=%d logits=%s", s.n, s.e, s.logits)
		x := routeLogits(e, s)
		ob := out(e, "out", unwritten[F](s.n*s.e))
		e.be.Softmax(ob, in(e, "x", x), s.n, s.e)
		want := refRoute(to64(x), s.n, s.e, 1)
		near(e, "out", get(e, ob), want.probs, want.pmag, e.tol(s.e))
		e.done()
	}
}

func checkRouterBackward[F kernels.Float](e *env[F]) {
	for _, s := range routeShapes {
		for _, c := range []float64{0, 0.37} {
			e.begin("N=%d E=%d k=%d logits=%s c=%v", s.n, s.e, s.k, s.logits, c)
			routerBackwardCase(e, s, c)
		}
	}
}

// routerBackwardCase checks dr from the reference's routing of random logits.
func routerBackwardCase[F kernels.Float](e *env[F], s routeShape, c float64) {
	e.r.Helper()
	nk := s.n * s.k
	rt := refRoute(to64(routeLogits(e, s)), s.n, s.e, s.k)
	probs, rowGate, dgate := toF[F](rt.probs), toF[F](rt.rowGate), uniform(e, nk, -1, 1)
	start, load := make([]int, s.e+1), make([]float64, s.e)
	for x, cnt := range rt.counts {
		start[x+1] = start[x] + cnt
		load[x] = float64(cnt) / float64(max(1, nk))
	}
	drb := out(e, "dr", uniform(e, s.n*s.e, -1, 1))
	e.be.RouterBackward(drb, in(e, "probs", probs), in(e, "dgate", dgate), in(e, "rowGate", rowGate),
		in(e, "rowTok", rt.rowTok), start, load, c, s.n, s.e)

	want, mag := make([]float64, s.n*s.e), make([]float64, s.n*s.e)
	for x := range s.e {
		for p := start[x]; p < start[x+1]; p++ {
			g, at := float64(rowGate[p]), int(rt.rowTok[p])*s.e+x
			want[at] = float64(dgate[p]) * g * (1 - g)
			mag[at] = math.Abs(want[at])
		}
	}
	if c != 0 {
		for t := range s.n {
			var dot, adot float64
			for x := range s.e {
				dot += float64(probs[t*s.e+x]) * load[x]
				adot += math.Abs(float64(probs[t*s.e+x]) * load[x])
			}
			for x := range s.e {
				p := float64(probs[t*s.e+x])
				want[t*s.e+x] += c * p * (load[x] - dot)
				mag[t*s.e+x] += math.Abs(c*p) * (math.Abs(load[x]) + adot)
			}
		}
	}
	near(e, "dr", get(e, drb), want, mag, e.tol(s.e))
	e.done()
}
