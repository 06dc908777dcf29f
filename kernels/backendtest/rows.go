package backendtest

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// Row-wise ops: embedding, RMSNorm, rotary embeddings.

// embedShapes are (N, C, V): empty, one value, widths that are not multiples of 16.
var embedShapes = [][3]int{{0, 7, 5}, {1, 1, 3}, {9, 37, 11}, {33, 16, 50}, {20, 100, 7}}

// embedIDs returns n token ids below v with about one in four -1 (image rows), and
// repeats.
func embedIDs[F kernels.Float](e *env[F], n, v int) []int32 {
	ids := ints(e, n, 0, v)
	for i := range ids {
		if e.rng.IntN(4) == 0 {
			ids[i] = -1
		}
	}
	return ids
}

func checkEmbedding[F kernels.Float](e *env[F]) {
	for _, s := range embedShapes {
		n, c, v := s[0], s[1], s[2]
		e.begin("N=%d C=%d V=%d", n, c, v)
		table := uniform(e, v*c, -1, 1)
		if v > 2 { // a NaN and an Inf reach the rows of their ids
			table[c+c/2], table[2*c] = F(math.NaN()), F(math.Inf(-1))
		}
		embeddingCase(e, table, embedIDs(e, n, v), n, c, 1.25)
	}
}

// embeddingCase checks out[i,:] = scale·table[ids[i],:], rows of id -1 left as they were.
func embeddingCase[F kernels.Float](e *env[F], table []F, ids []int32, n, c int, scale F) {
	e.r.Helper()
	o := uniform(e, n*c, -1, 1)
	ob := out(e, "out", o)
	e.be.Embedding(ob, in(e, "table", table), in(e, "ids", ids), c, scale)
	want := to64(o)
	for i, id := range ids {
		if id < 0 {
			continue
		}
		for j := range c {
			want[i*c+j] = float64(scale) * float64(table[int(id)*c+j])
		}
	}
	near(e, "out", get(e, ob), want, nil, e.tol(1))
	e.done()
}

func checkEmbeddingBackward[F kernels.Float](e *env[F]) {
	for _, s := range embedShapes {
		n, c, v := s[0], s[1], s[2]
		e.begin("N=%d C=%d V=%d", n, c, v)
		dt, dout, ids := uniform(e, v*c, -1, 1), uniform(e, n*c, -1, 1), embedIDs(e, n, v)
		const scale = 0.75
		db, db2 := out(e, "dtable", dt), out(e, "dtable (again)", dt)
		doutb, idsb := in(e, "dout", dout), in(e, "ids", ids)
		e.be.EmbeddingBackward(db, doutb, idsb, c, scale)
		e.be.EmbeddingBackward(db2, doutb, idsb, c, scale)
		sameRuns(e, "dtable", db, db2)
		want, mag := to64(dt), absOf(to64(dt))
		for i, id := range ids {
			if id < 0 {
				continue
			}
			for j := range c {
				d := scale * float64(dout[i*c+j])
				want[int(id)*c+j] += d
				mag[int(id)*c+j] += math.Abs(d)
			}
		}
		near(e, "dtable", get(e, db), want, mag, e.tol(n))
		e.done()
	}
}

// normShapes are (N, C): empty, one value, widths that are not multiples of 16.
var normShapes = [][2]int{{0, 8}, {1, 1}, {5, 37}, {33, 16}, {7, 100}, {3, 257}}

// normInput returns rows of x with, where there are three rows or more, an all-zero row 0
// and (nan) a NaN in row 1.
func normInput[F kernels.Float](e *env[F], n, c int, nan bool) []F {
	x := uniform(e, n*c, -2, 2)
	if n >= 3 {
		clear(x[:c])
		if nan {
			x[c+c/2] = F(math.NaN())
		}
	}
	return x
}

// refRstd is 1/sqrt(mean(x[i,:]²) + eps) of each row.
func refRstd(x []float64, n, c int, eps float64) []float64 {
	r := make([]float64, n)
	for i := range n {
		var ss float64
		for _, v := range x[i*c : i*c+c] {
			ss += v * v
		}
		r[i] = 1 / math.Sqrt(ss/float64(c)+eps)
	}
	return r
}

func checkRMSNorm[F kernels.Float](e *env[F]) {
	const eps = 1e-5
	for _, s := range normShapes {
		n, c := s[0], s[1]
		e.begin("N=%d C=%d", n, c)
		x, g := normInput(e, n, c, true), uniform(e, c, 0.5, 1.5)
		ob, rb := out(e, "out", unwritten[F](n*c)), out(e, "rstd", unwritten[F](n))
		e.be.RMSNorm(ob, rb, in(e, "x", x), in(e, "g", g), c, eps)
		r := refRstd(to64(x), n, c, eps)
		want := make([]float64, n*c)
		for i := range n {
			for j := range c {
				want[i*c+j] = float64(x[i*c+j]) * r[i] * float64(g[j])
			}
		}
		near(e, "rstd", get(e, rb), r, r, e.tol(c))
		near(e, "out", get(e, ob), want, absOf(want), e.tol(c))
		e.done()
	}
}

func checkRMSNormBackward[F kernels.Float](e *env[F]) {
	for _, s := range normShapes {
		n, c := s[0], s[1]
		e.begin("N=%d C=%d", n, c)
		x, g, dout := normInput(e, n, c, false), uniform(e, c, 0.5, 1.5), uniform(e, n*c, -1, 1)
		rstd := toF[F](refRstd(to64(x), n, c, 1e-5))
		dx, dg := uniform(e, n*c, -1, 1), uniform(e, c, -1, 1)
		dxb, dgb := out(e, "dx", dx), out(e, "dg", dg)
		dxb2, dgb2 := out(e, "dx (again)", dx), out(e, "dg (again)", dg)
		ins := []kernels.Buf[F]{in(e, "dout", dout), in(e, "x", x), in(e, "g", g), in(e, "rstd", rstd)}
		e.be.RMSNormBackward(dxb, dgb, ins[0], ins[1], ins[2], ins[3], c)
		e.be.RMSNormBackward(dxb2, dgb2, ins[0], ins[1], ins[2], ins[3], c)
		sameRuns(e, "dx", dxb, dxb2)
		sameRuns(e, "dg", dgb, dgb2)

		// With n = x·r and dn = dout⊙g: dx += r·(dn - n·mean(dn⊙n)), dg += Σᵢ dout⊙n.
		wdx, mdx := to64(dx), absOf(to64(dx))
		wdg, mdg := to64(dg), absOf(to64(dg))
		for i := range n {
			r := float64(rstd[i])
			var m, am float64
			for j := range c {
				dn, nv := float64(dout[i*c+j])*float64(g[j]), float64(x[i*c+j])*r
				m += dn * nv / float64(c)
				am += math.Abs(dn*nv) / float64(c)
			}
			for j := range c {
				dn, nv := float64(dout[i*c+j])*float64(g[j]), float64(x[i*c+j])*r
				wdx[i*c+j] += r * (dn - nv*m)
				mdx[i*c+j] += math.Abs(r) * (math.Abs(dn) + math.Abs(nv)*am)
				wdg[j] += float64(dout[i*c+j]) * nv
				mdg[j] += math.Abs(float64(dout[i*c+j]) * nv)
			}
		}
		near(e, "dx", get(e, dxb), wdx, mdx, e.tol(c))
		near(e, "dg", get(e, dgb), wdg, mdg, e.tol(n))
		e.done()
	}
}

// ropeShapes are (N, heads, D, maxPos).
var ropeShapes = [][4]int{{0, 2, 4, 8}, {1, 1, 2, 1}, {7, 3, 8, 16}, {20, 2, 18, 32}, {5, 4, 64, 40}, {9, 1, 34, 9}}

// ropeTables returns the cos and sin of the angles p·θ^(-2j/D), [maxPos, D/2].
func ropeTables[F kernels.Float](maxPos, d int) (cos, sin []F) {
	half := d / 2
	cos, sin = make([]F, maxPos*half), make([]F, maxPos*half)
	for p := range maxPos {
		for j := range half {
			a := float64(p) * math.Pow(10000, -2*float64(j)/float64(d))
			cos[p*half+j], sin[p*half+j] = F(math.Cos(a)), F(math.Sin(a))
		}
	}
	return cos, sin
}

func checkRoPE[F kernels.Float](e *env[F])         { ropeCases(e, false) }
func checkRoPEBackward[F kernels.Float](e *env[F]) { ropeCases(e, true) }

// ropeCases checks RoPE, or RoPEBackward (inverse): each pair (2j, 2j+1) of each head
// turned by the angle of the row's position, or back.
func ropeCases[F kernels.Float](e *env[F], inverse bool) {
	for _, s := range ropeShapes {
		n, heads, d, maxPos := s[0], s[1], s[2], s[3]
		e.begin("N=%d heads=%d D=%d maxPos=%d", n, heads, d, maxPos)
		x, pos := uniform(e, n*heads*d, -1, 1), ints(e, n, 0, maxPos)
		if n > 0 {
			pos[n-1] = int32(maxPos - 1)
		}
		cos, sin := ropeTables[F](maxPos, d)
		xb := out(e, "x", x)
		if inverse {
			e.be.RoPEBackward(xb, in(e, "pos", pos), in(e, "cos", cos), in(e, "sin", sin), heads, d)
		} else {
			e.be.RoPE(xb, in(e, "pos", pos), in(e, "cos", cos), in(e, "sin", sin), heads, d)
		}
		want, mag := make([]float64, len(x)), make([]float64, len(x))
		half := d / 2
		for i := range n {
			for h := range heads {
				for j := range half {
					at := i*heads*d + h*d + 2*j
					a, b := float64(x[at]), float64(x[at+1])
					c, sn := float64(cos[int(pos[i])*half+j]), float64(sin[int(pos[i])*half+j])
					if inverse {
						sn = -sn
					}
					want[at], want[at+1] = a*c-b*sn, a*sn+b*c
					mag[at], mag[at+1] = math.Abs(a*c)+math.Abs(b*sn), math.Abs(a*sn)+math.Abs(b*c)
				}
			}
		}
		near(e, "x", get(e, xb), want, mag, e.tol(1))
		e.done()
	}
}

// absOf returns |x[i]|.
func absOf(x []float64) []float64 {
	s := make([]float64, len(x))
	for i, v := range x {
		s[i] = math.Abs(v)
	}
	return s
}
