package cpu

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// Row-wise ops of the model: embedding lookup, RMSNorm, rotary embeddings. Each forward sits
// beside its backward. Rows are independent, so they run in parallel over rows; reductions
// across rows (embedding and gain gradients) run in parallel over columns instead, each
// column summed over rows in order, so the result does not depend on the thread count.

// rowGrain is the fewest rows worth a goroutine for O(C) work per row.
const rowGrain = 16

// colGrain is the fewest columns worth a goroutine for a reduction over all rows.
const colGrain = 8

// Embedding: see kernels.Backend.
func (*Backend[F]) Embedding(out, table []F, ids []int32, c int, scale F) {
	parallelFor(len(ids), rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if ids[i] < 0 {
				continue
			}
			src := table[int(ids[i])*c : int(ids[i])*c+c]
			dst := out[i*c : i*c+c]
			for j, v := range src {
				dst[j] = scale * v
			}
		}
	})
}

// EmbeddingBackward: see kernels.Backend. A token id can repeat, so rows of dtable receive
// several contributions; splitting over columns keeps their order fixed.
func (*Backend[F]) EmbeddingBackward(dtable, dout []F, ids []int32, c int, scale F) {
	parallelFor(c, colGrain, func(lo, hi int) {
		for i, id := range ids {
			if id < 0 {
				continue
			}
			dst := dtable[int(id)*c+lo : int(id)*c+hi]
			src := dout[i*c+lo : i*c+hi]
			for j, v := range src {
				dst[j] += scale * v
			}
		}
	})
}

// RMSNorm: see kernels.Backend. The mean square is summed in F; the reciprocal square
// root is taken in float64 and rounded to F.
func (*Backend[F]) RMSNorm(out, rstd, x, g []F, c int, eps float64) {
	parallelFor(len(rstd), rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xi := x[i*c : i*c+c]
			var ss F
			for _, v := range xi {
				ss += v * v
			}
			r := F(1 / math.Sqrt(float64(ss/F(c))+eps))
			rstd[i] = r
			oi := out[i*c : i*c+c]
			for j, v := range xi {
				oi[j] = v * r * g[j]
			}
		}
	})
}

// RMSNormBackward: see kernels.Backend. With n = x·r (normalised input) and dn = dout⊙g:
// dx = r·(dn - n·mean(dn⊙n)), dg = Σᵢ dout⊙n.
func (*Backend[F]) RMSNormBackward(dx, dg, dout, x, g, rstd []F, c int) {
	n := len(rstd)
	parallelFor(n, rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xi, di := x[i*c:i*c+c], dout[i*c:i*c+c]
			r := rstd[i]
			var dot F
			for j, v := range xi {
				dot += di[j] * g[j] * v
			}
			// mean(dn⊙n) = r·dot/C, and n = x·r, so the correction term is x·r²·dot/C.
			corr := r * r * dot / F(c)
			dxi := dx[i*c : i*c+c]
			for j, v := range xi {
				dxi[j] += r * (di[j]*g[j] - v*corr)
			}
		}
	})
	parallelFor(c, colGrain, func(lo, hi int) {
		for i := 0; i < n; i++ {
			r := rstd[i]
			for j := lo; j < hi; j++ {
				dg[j] += dout[i*c+j] * x[i*c+j] * r
			}
		}
	})
}

// RoPE: see kernels.Backend.
func (*Backend[F]) RoPE(x []F, pos []int32, cos, sin []F, heads, d int) {
	rotate(x, pos, cos, sin, heads, d, 1)
}

// RoPEBackward: see kernels.Backend. A rotation's inverse is its transpose: the rotation
// by the negative angle.
func (*Backend[F]) RoPEBackward(dx []F, pos []int32, cos, sin []F, heads, d int) {
	rotate(dx, pos, cos, sin, heads, d, -1)
}

// rotate turns each pair of every head of row i by sign·angle(pos[i]).
func rotate[F kernels.Float](x []F, pos []int32, cos, sin []F, heads, d int, sign F) {
	half, w := d/2, heads*d
	parallelFor(len(pos), rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			cs := cos[int(pos[i])*half : int(pos[i])*half+half]
			sn := sin[int(pos[i])*half : int(pos[i])*half+half]
			for h := range heads {
				xh := x[i*w+h*d : i*w+h*d+d]
				for j := range half {
					a, b := xh[2*j], xh[2*j+1]
					c, s := cs[j], sign*sn[j]
					xh[2*j] = a*c - b*s
					xh[2*j+1] = a*s + b*c
				}
			}
		}
	})
}
