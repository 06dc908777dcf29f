package backendtest

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// Elementwise ops, the loss, and the row gathers of routing.

// elemSizes are element counts: empty, one, around a vector of 16, larger.
var elemSizes = []int{0, 1, 15, 16, 17, 100, 1000}

// withNaN puts a NaN at x[3] and an Inf at x[7] where x is long enough.
func withNaN[F kernels.Float](x []F) []F {
	if len(x) > 7 {
		x[3], x[7] = F(math.NaN()), F(math.Inf(1))
	}
	return x
}

// sigmoid is 1/(1+e^-a).
func sigmoid(a float64) float64 { return 1 / (1 + math.Exp(-a)) }

func checkSwiGLU[F kernels.Float](e *env[F]) {
	for _, n := range elemSizes {
		e.begin("N=%d", n)
		a, u := uniform(e, n, -12, 12), uniform(e, n, -2, 2)
		if n > 8 { // NaN in a reaches out and sig, NaN in u out only; ±20 saturate sig
			a[3], u[5], a[6], a[8] = F(math.NaN()), F(math.NaN()), 20, -20
		}
		ob, sb := out(e, "out", unwritten[F](n)), out(e, "sig", unwritten[F](n))
		e.be.SwiGLU(ob, sb, in(e, "a", a), in(e, "u", u))
		wo, ws := make([]float64, n), make([]float64, n)
		for i := range n {
			ws[i] = sigmoid(float64(a[i]))
			wo[i] = float64(a[i]) * ws[i] * float64(u[i])
		}
		near(e, "sig", get(e, sb), ws, absOf(ws), e.tol(1))
		near(e, "out", get(e, ob), wo, absOf(wo), e.tol(1))
		e.done()
	}
}

func checkSwiGLUBackward[F kernels.Float](e *env[F]) {
	for _, n := range elemSizes {
		e.begin("N=%d", n)
		a, u, dout := uniform(e, n, -12, 12), uniform(e, n, -2, 2), uniform(e, n, -1, 1)
		sig := make([]F, n)
		for i := range n {
			sig[i] = F(sigmoid(float64(a[i])))
		}
		da, du := uniform(e, n, -1, 1), uniform(e, n, -1, 1)
		dab, dub := out(e, "da", da), out(e, "du", du)
		e.be.SwiGLUBackward(dab, dub, in(e, "dout", dout), in(e, "a", a), in(e, "u", u), in(e, "sig", sig))
		// silu(a) = a·s, silu'(a) = s·(1 + a·(1-s)).
		wa, wu := to64(da), to64(du)
		ma, mu := absOf(wa), absOf(wu)
		for i := range n {
			s, av, d := float64(sig[i]), float64(a[i]), float64(dout[i])
			wa[i] += d * float64(u[i]) * s * (1 + av*(1-s))
			ma[i] += math.Abs(d*float64(u[i])) * s * (1 + math.Abs(av))
			wu[i] += d * av * s
			mu[i] += math.Abs(d * av * s)
		}
		near(e, "da", get(e, dab), wa, ma, e.tol(1))
		near(e, "du", get(e, dub), wu, mu, e.tol(1))
		e.done()
	}
}

// ceShapes are (N, V): empty, one class, vocabularies that are not multiples of 16.
var ceShapes = [][2]int{{0, 5}, {1, 1}, {7, 37}, {16, 100}, {5, 1000}}

func checkCrossEntropy[F kernels.Float](e *env[F]) {
	for _, s := range ceShapes {
		n, v := s[0], s[1]
		e.begin("N=%d V=%d", n, v)
		logits, targets := uniform(e, n*v, -4, 4), ints(e, n, 0, v)
		if n > 2 && v > 3 { // a NaN logit makes its row's loss and lse NaN
			logits[v+3] = F(math.NaN())
		}
		lb, sb := out(e, "loss", unwritten[F](n)), out(e, "lse", unwritten[F](n))
		e.be.CrossEntropy(lb, sb, in(e, "logits", logits), in(e, "targets", targets), v)
		wl, ws := make([]float64, n), make([]float64, n)
		ml, ms := make([]float64, n), make([]float64, n)
		for i := range n {
			row := to64(logits[i*v : i*v+v])
			lt := row[targets[i]]
			ws[i] = logSumExp(row)
			wl[i] = ws[i] - lt
			ms[i] = 1 + math.Abs(ws[i]) + maxAbs(row)
			ml[i] = ms[i] + math.Abs(lt)
		}
		near(e, "lse", get(e, sb), ws, ms, e.tol(v))
		near(e, "loss", get(e, lb), wl, ml, e.tol(v))
		e.done()
	}
}

func checkCrossEntropyBackward[F kernels.Float](e *env[F]) {
	for _, s := range ceShapes {
		n, v := s[0], s[1]
		e.begin("N=%d V=%d, masked rows", n, v)
		logits, targets := uniform(e, n*v, -4, 4), ints(e, n, 0, v)
		lse := make([]F, n)
		for i := range n {
			lse[i] = F(logSumExp(to64(logits[i*v : i*v+v])))
		}
		w := uniform(e, n, 0, 0.5)
		for i := range w {
			if i%3 == 1 { // masked rows: weight 0, dlogits untouched
				w[i] = 0
			}
		}
		d := uniform(e, n*v, -1, 1)
		db := out(e, "dlogits", d)
		e.be.CrossEntropyBackward(db, in(e, "logits", logits), in(e, "lse", lse), in(e, "targets", targets), in(e, "w", w), v)
		want, mag := to64(d), absOf(to64(d))
		for i := range n {
			wi := float64(w[i])
			for j := range v {
				x := float64(logits[i*v+j]) - float64(lse[i])
				p, hot := math.Exp(x), 0.0
				if j == int(targets[i]) {
					hot = 1
				}
				want[i*v+j] += wi * (p - hot)
				mag[i*v+j] += math.Abs(wi) * (p*(1+math.Abs(x)) + hot)
			}
		}
		near(e, "dlogits", get(e, db), want, mag, e.tol(v))
		e.done()
	}
}

// maxAbs is max |x[i]|.
func maxAbs(x []float64) float64 {
	var m float64
	for _, v := range x {
		m = max(m, math.Abs(v))
	}
	return m
}

func checkLossWeights[F kernels.Float](e *env[F]) {
	for _, n := range []int{0, 1, 17, 100} {
		for _, none := range []bool{false, true} {
			e.begin("N=%d no tokens=%v", n, none)
			mask := make([]F, n)
			tokens := 0.0
			for i := range mask {
				mask[i] = F([]float64{0, 1, 1, 0.5}[e.rng.IntN(4)])
				tokens += float64(mask[i])
			}
			if none {
				tokens = 0
			}
			const scale = 0.7
			wb := out(e, "w", uniform(e, n, -1, 1))
			e.be.LossWeights(wb, in(e, "mask", mask), scale, tokens)
			want := make([]float64, n)
			for i := range want {
				if tokens != 0 {
					want[i] = float64(F(float64(F(scale)) * float64(mask[i]) / tokens))
				}
			}
			near(e, "w", get(e, wb), want, nil, e.tol(1))
			e.done()
		}
	}
}

func checkScale[F kernels.Float](e *env[F]) {
	for _, n := range elemSizes {
		e.begin("N=%d", n)
		x := withNaN(uniform(e, n, -2, 2))
		const s = 0.37
		xb := out(e, "x", x)
		e.be.Scale(xb, s)
		want := to64(x)
		for i := range want {
			want[i] *= float64(F(s))
		}
		near(e, "x", get(e, xb), want, nil, e.tol(1))
		e.done()
	}
}

func checkAxpy[F kernels.Float](e *env[F]) {
	for _, n := range elemSizes {
		e.begin("N=%d", n)
		y, x := uniform(e, n, -2, 2), withNaN(uniform(e, n, -2, 2))
		const a = -1.3
		yb := out(e, "y", y)
		e.be.Axpy(yb, in(e, "x", x), a)
		want, mag := to64(y), absOf(to64(y))
		for i := range want {
			p := float64(F(a)) * float64(x[i])
			want[i] += p
			mag[i] += math.Abs(p)
		}
		near(e, "y", get(e, yb), want, mag, e.tol(1))
		e.done()
	}
}

// gatherShapes are (rows of src, len(idx), C): no index, one, widths that are not
// multiples of 16.
var gatherShapes = [][3]int{{5, 0, 7}, {1, 1, 1}, {10, 23, 37}, {40, 64, 16}, {7, 9, 100}}

// weightKinds are the ways to pass GatherRows' and GatherSum's weights: random ones, or
// "none" as the zero Buf or as an empty view of an allocation.
var weightKinds = []string{"weights", "zero Buf", "empty view"}

// weights returns n row weights of the given kind (1s for none) and the buffer to pass.
func weights[F kernels.Float](e *env[F], n int, kind string) ([]F, kernels.Buf[F]) {
	switch kind {
	case "zero Buf", "empty view":
		w := make([]F, n)
		for i := range w {
			w[i] = 1
		}
		if kind == "empty view" {
			return w, in(e, "w", []F{})
		}
		return w, kernels.Buf[F]{}
	}
	w := uniform(e, n, -2, 2)
	return w, in(e, "w", w)
}

func checkGatherRows[F kernels.Float](e *env[F]) {
	for _, s := range gatherShapes {
		rows, n, c := s[0], s[1], s[2]
		for _, kind := range weightKinds {
			e.begin("rows=%d N=%d C=%d w: %s", rows, n, c, kind)
			src, idx := uniform(e, rows*c, -1, 1), ints(e, n, 0, rows)
			w, wb := weights(e, n, kind)
			db := out(e, "dst", uniform(e, n*c, -1, 1))
			e.be.GatherRows(db, in(e, "src", src), in(e, "idx", idx), wb, c)
			want := make([]float64, n*c)
			for i, r := range idx {
				for j := range c {
					want[i*c+j] = float64(w[i]) * float64(src[int(r)*c+j])
				}
			}
			near(e, "dst", get(e, db), want, nil, e.tol(1))
			e.done()
		}
	}
}

func checkGatherSum[F kernels.Float](e *env[F]) {
	for _, s := range gatherShapes {
		rows, n, c := s[0], s[1], s[2]
		for k := 1; k <= 3; k++ {
			kind := weightKinds[k-1]
			e.begin("rows=%d N=%d C=%d k=%d w: %s", rows, n, c, k, kind)
			src, idx := uniform(e, rows*c, -1, 1), ints(e, n*k, 0, rows)
			w, wb := weights(e, n*k, kind)
			d := uniform(e, n*c, -1, 1)
			db := out(e, "dst", d)
			e.be.GatherSum(db, in(e, "src", src), in(e, "idx", idx), wb, k, c)
			want, mag := to64(d), absOf(to64(d))
			for i := range n {
				for j := i * k; j < i*k+k; j++ {
					for p := range c {
						x := float64(w[j]) * float64(src[int(idx[j])*c+p])
						want[i*c+p] += x
						mag[i*c+p] += math.Abs(x)
					}
				}
			}
			near(e, "dst", get(e, db), want, mag, e.tol(k))
			e.done()
		}
	}
}

func checkScatterRows[F kernels.Float](e *env[F]) {
	for _, s := range gatherShapes {
		rows, n, c := s[0]+s[1], s[1], s[2] // room for n distinct rows
		e.begin("rows=%d N=%d C=%d", rows, n, c)
		d, src := uniform(e, rows*c, -1, 1), uniform(e, n*c, -1, 1)
		idx := make([]int32, n)
		for i, r := range e.rng.Perm(rows)[:n] {
			idx[i] = int32(r)
		}
		db := out(e, "dst", d)
		e.be.ScatterRows(db, in(e, "src", src), in(e, "idx", idx), c)
		want := to64(d)
		for i, r := range idx {
			copy(want[int(r)*c:int(r)*c+c], to64(src[i*c:i*c+c]))
		}
		near(e, "dst", get(e, db), want, nil, e.tol(1))
		e.done()
	}
}

func checkRowDots[F kernels.Float](e *env[F]) {
	for _, s := range gatherShapes {
		rows, n, c := s[0], s[1], s[2]
		e.begin("rows=%d N=%d C=%d", rows, n, c)
		a, b, idx := uniform(e, rows*c, -1, 1), uniform(e, n*c, -1, 1), ints(e, n, 0, rows)
		ob := out(e, "out", uniform(e, n, -1, 1))
		e.be.RowDots(ob, in(e, "a", a), in(e, "b", b), in(e, "idx", idx), c)
		want, mag := make([]float64, n), make([]float64, n)
		for i, r := range idx {
			for j := range c {
				x := float64(a[int(r)*c+j]) * float64(b[i*c+j])
				want[i] += x
				mag[i] += math.Abs(x)
			}
		}
		near(e, "out", get(e, ob), want, mag, e.tol(c))
		e.done()
	}
}
