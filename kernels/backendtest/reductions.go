package backendtest

import (
	"fmt"
	"math"

	"github.com/herdml/herd/kernels"
)

// The reductions that return host scalars, and AdamW.

// reduceCases returns x for the reductions' cases: plain, with a NaN (the result is
// NaN), and with an Inf (the result is infinite).
func reduceCases[F kernels.Float](e *env[F], n int) []namedInput[F] {
	cases := []namedInput[F]{{"plain", uniform(e, n, -2, 2)}}
	if n > 7 {
		x := uniform(e, n, -2, 2)
		x[n/2] = F(math.NaN())
		cases = append(cases, namedInput[F]{"NaN", x})
		x = uniform(e, n, -2, 2)
		x[n-1] = F(math.Inf(1))
		cases = append(cases, namedInput[F]{"Inf", x})
	}
	return cases
}

// namedInput is an input of a reduction and the name of its case.
type namedInput[F kernels.Float] struct {
	name string
	x    []F
}

func checkDot[F kernels.Float](e *env[F]) {
	for _, n := range elemSizes {
		for _, c := range reduceCases(e, n) {
			name, a := c.name, c.x
			e.begin("N=%d %s", n, name)
			b := uniform(e, n, 0.5, 2) // positive: a's Inf stays +Inf
			got := e.be.Dot(in(e, "a", a), in(e, "b", b))
			var want, mag float64
			for i := range n {
				want += float64(a[i]) * float64(b[i])
				mag += math.Abs(float64(a[i]) * float64(b[i]))
			}
			nearScalar(e, "Dot", got, want, mag, e.tol64(n))
			e.done()
		}
	}
}

func checkColumnSums[F kernels.Float](e *env[F]) {
	for _, s := range [][2]int{{0, 3}, {1, 1}, {7, 37}, {100, 5}, {17, 16}} {
		rows, cols := s[0], s[1]
		for _, c := range reduceCases(e, rows*cols) {
			name, x := c.name, c.x
			e.begin("rows=%d cols=%d %s", rows, cols, name)
			sums := make([]float64, cols)
			for j := range sums {
				sums[j] = 99 // ColumnSums writes every sum
			}
			e.be.ColumnSums(sums, in(e, "x", x), rows, cols)
			for j := range cols {
				var want, mag float64
				for i := range rows {
					want += float64(x[i*cols+j])
					mag += math.Abs(float64(x[i*cols+j]))
				}
				nearScalar(e, fmt.Sprintf("sums[%d]", j), sums[j], want, mag, e.tol64(rows))
			}
			e.done()
		}
	}
}

// refSumSquares is SumSquares' order from its doc comment: blocks of SumSquaresBlock
// values, each summed in 8 lanes (lane j takes elements j, j+8, ...), the lanes added
// pairwise, the block sums added in block order.
func refSumSquares[F kernels.Float](x []F) float64 {
	var total float64
	for b0 := 0; b0 < len(x); b0 += kernels.SumSquaresBlock {
		var l [8]float64
		for i, v := range x[b0:min(b0+kernels.SumSquaresBlock, len(x))] {
			l[i%8] += float64(float64(v) * float64(v)) // rounded before the sum: never fused
		}
		for w := 4; w >= 1; w /= 2 {
			for i := range w {
				l[i] += l[i+w]
			}
		}
		total += l[0]
	}
	return total
}

func checkSumSquares[F kernels.Float](e *env[F]) {
	for _, n := range []int{0, 1, 7, 100, 1000, kernels.SumSquaresBlock + 100, 2*kernels.SumSquaresBlock + 3} {
		for _, c := range reduceCases(e, n) {
			name, x := c.name, c.x
			e.begin("N=%d %s", n, name)
			nearScalar(e, "SumSquares", e.be.SumSquares(in(e, "x", x)), refSumSquares(x), 0, e.tol64(n))
			e.done()
		}
	}
}

func checkMeanAbsDiff[F kernels.Float](e *env[F]) {
	// Not N = 0: the mean of no values is not defined by the contract.
	for _, n := range []int{1, 17, 1000} {
		for _, c := range reduceCases(e, n) {
			name, a := c.name, c.x
			for _, none := range []bool{false, true} {
				e.begin("N=%d %s b empty=%v", n, name, none)
				b, bb := make([]F, n), kernels.Buf[F]{}
				if !none {
					b = uniform(e, n, -2, 2)
					bb = in(e, "b", b)
				}
				got := e.be.MeanAbsDiff(in(e, "a", a), bb)
				var sum, mag float64
				for i := range n {
					sum += math.Abs(float64(a[i]) - float64(b[i]))
					mag += math.Abs(float64(a[i])) + math.Abs(float64(b[i]))
				}
				nearScalar(e, "MeanAbsDiff", got, sum/float64(n), mag/float64(n), e.tol64(n))
				e.done()
			}
		}
	}
}

// adamWSpans are AdamW cases on a buffer of 1000 values: no span, spans of two groups
// with gaps between them (the gaps stay as they are), and one-value spans.
var adamWSpans = [][]kernels.Span{
	nil,
	{{Lo: 0, Hi: 100, Group: 0}, {Lo: 100, Hi: 357, Group: 1}, {Lo: 400, Hi: 999, Group: 0}},
	{{Lo: 3, Hi: 4, Group: 1}, {Lo: 17, Hi: 18, Group: 0}, {Lo: 20, Hi: 1000, Group: 1}},
}

// adamWCoeffs returns coefficients of step t with learning rate lr, weight decay wd and
// the gradient factor gs, as an optimizer computes them.
func adamWCoeffs(lr, wd, gs float64, t int) kernels.AdamWCoeffs {
	const b1, b2 = 0.9, 0.95
	return kernels.AdamWCoeffs{
		B1: b1, C1: 1 - b1, B2: b2, C2: 1 - b2, Decay: 1 - lr*wd,
		StepSize: lr / (1 - math.Pow(b1, float64(t))), BC2Sqrt: math.Sqrt(1 - math.Pow(b2, float64(t))),
		Eps: 1e-8, GScale: gs,
	}
}

// refAdamW is the update of kernels.AdamWCoeffs' doc comment, one rounding to F per
// operation, in its order.
func refAdamW[F kernels.Float](p, g []F, m, v []float32, spans []kernels.Span, coeffs []kernels.AdamWCoeffs) {
	for _, s := range spans {
		c := coeffs[s.Group]
		gs, b1, c1, b2, c2 := F(c.GScale), F(c.B1), F(c.C1), F(c.B2), F(c.C2)
		decay, step, bc2s, eps := F(c.Decay), F(c.StepSize), F(c.BC2Sqrt), F(c.Eps)
		for i := s.Lo; i < s.Hi; i++ {
			gr := F(g[i] * gs)
			mi := F(F(m[i])*b1) + F(gr*c1)
			vi := F(F(v[i])*b2) + F(F(gr*gr)*c2)
			m[i], v[i] = float32(mi), float32(vi)
			denom := F(F(math.Sqrt(float64(vi)))/bc2s) + eps
			p[i] = F(p[i]*decay) - F(step*F(mi/denom))
		}
	}
}

func checkAdamW[F kernels.Float](e *env[F]) {
	coeffs := []kernels.AdamWCoeffs{adamWCoeffs(3e-3, 0.1, 1, 1), adamWCoeffs(1e-3, 0.05, 0.8, 7)}
	const n = 1000
	for i, spans := range adamWSpans {
		e.begin("spans case %d", i)
		p, g := uniform(e, n, -1, 1), uniform(e, n, -1, 1)
		m, v := make([]float32, n), make([]float32, n)
		for j := range m {
			m[j], v[j] = float32(0.02*e.rng.Float64()-0.01), float32(1e-4*e.rng.Float64())
		}
		pb, mb, vb := out(e, "p", p), out(e, "m", m), out(e, "v", v)
		e.be.AdamW(pb, in(e, "g", g), mb, vb, spans, coeffs)
		refAdamW(p, g, m, v, spans, coeffs)
		same(e, "p", get(e, pb), p)
		same(e, "m", get(e, mb), m)
		same(e, "v", get(e, vb), v)
		e.done()
	}
}
