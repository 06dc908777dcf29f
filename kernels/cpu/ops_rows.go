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

// colGrain is the fewest columns worth a goroutine for a reduction over all rows: one
// AVX-512 vector.
const colGrain = 16

// embedding is kernels.Backend's Embedding on the buffers' slices.
func (*Backend[F]) embedding(out, table []F, ids []int32, c int, scale F) {
	parallelFor(len(ids), rowGrain, embedding[F]{out, table, ids, c, scale})
}

type embedding[F kernels.Float] struct {
	out, table []F
	ids        []int32
	c          int
	scale      F
}

func (t *embedding[F]) run(lo, hi int) {
	c := t.c
	for i := lo; i < hi; i++ {
		if t.ids[i] < 0 {
			continue
		}
		src := t.table[int(t.ids[i])*c : int(t.ids[i])*c+c]
		dst := t.out[i*c : i*c+c]
		for j, v := range src {
			dst[j] = t.scale * v
		}
	}
}

// embeddingBackward is kernels.Backend's EmbeddingBackward on the buffers' slices. A token
// id can repeat, so rows of dtable receive several contributions; splitting over columns
// keeps their order fixed.
func (*Backend[F]) embeddingBackward(dtable, dout []F, ids []int32, c int, scale F) {
	parallelFor(c, colGrain, embeddingBackward[F]{dtable, dout, ids, c, scale})
}

type embeddingBackward[F kernels.Float] struct {
	dtable, dout []F
	ids          []int32
	c            int
	scale        F
}

func (t *embeddingBackward[F]) run(lo, hi int) {
	c := t.c
	for i, id := range t.ids {
		if id < 0 {
			continue
		}
		dst := t.dtable[int(id)*c+lo : int(id)*c+hi]
		src := t.dout[i*c+lo : i*c+hi]
		for j, v := range src {
			dst[j] += t.scale * v
		}
	}
}

// rmsNorm is kernels.Backend's RMSNorm on the buffers' slices. The mean square is summed in
// F, in 16 lanes (sumSquares); the reciprocal square root is taken in float64 and rounded
// to F.
func (be *Backend[F]) rmsNorm(out, rstd, x, g []F, c int, eps float64) {
	parallelFor(len(rstd), rowGrain, rmsNorm[F]{be.impl(), out, rstd, x, g, c, eps})
}

type rmsNorm[F kernels.Float] struct {
	im              *gemmImpl
	out, rstd, x, g []F
	c               int
	eps             float64
}

func (t *rmsNorm[F]) run(lo, hi int) {
	c := t.c
	for i := lo; i < hi; i++ {
		xi := t.x[i*c : i*c+c]
		r := F(1 / math.Sqrt(float64(sumSquares(t.im, xi)/F(c))+t.eps))
		t.rstd[i] = r
		normRow(t.im, t.out[i*c:i*c+c], xi, t.g, r)
	}
}

// rmsNormBackward is kernels.Backend's RMSNormBackward on the buffers' slices. With n = x·r
// (normalised input) and dn = dout⊙g: dx = r·(dn - n·mean(dn⊙n)), dg = Σᵢ dout⊙n. The rows
// run in parallel for dx, then the columns for dg.
func (be *Backend[F]) rmsNormBackward(dx, dg, dout, x, g, rstd []F, c int) {
	parallelFor(len(rstd), rowGrain, rmsNormBackward[F]{be.impl(), dx, dout, x, g, rstd, c})
	parallelFor(c, colGrain, rmsNormGain[F]{be.impl(), dg, dout, x, rstd, c})
}

type rmsNormBackward[F kernels.Float] struct {
	im                   *gemmImpl
	dx, dout, x, g, rstd []F
	c                    int
}

func (t *rmsNormBackward[F]) run(lo, hi int) {
	c := t.c
	for i := lo; i < hi; i++ {
		xi, di := t.x[i*c:i*c+c], t.dout[i*c:i*c+c]
		r := t.rstd[i]
		// mean(dn⊙n) = r·dot/C with dot = Σ dout⊙g⊙x, and n = x·r, so the correction term
		// is x·r²·dot/C.
		corr := r * r * dot3(t.im, di, t.g, xi) / F(c)
		normRowBackward(t.im, t.dx[i*c:i*c+c], di, t.g, xi, r, corr)
	}
}

// rmsNormGain accumulates dg[j] += Σᵢ dout[i,j]·x[i,j]·rstd[i] for columns [lo, hi).
type rmsNormGain[F kernels.Float] struct {
	im                *gemmImpl
	dg, dout, x, rstd []F
	c                 int
}

func (t *rmsNormGain[F]) run(lo, hi int) {
	c := t.c
	for i, r := range t.rstd {
		mulAdd(t.im, t.dg[lo:hi], t.dout[i*c+lo:i*c+hi], t.x[i*c+lo:i*c+hi], r)
	}
}

// roPE is kernels.Backend's RoPE on the buffers' slices.
func (be *Backend[F]) roPE(x []F, pos []int32, cos, sin []F, heads, d int) {
	parallelFor(len(pos), rowGrain, rotate[F]{be.impl(), x, pos, cos, sin, heads, d, 1})
}

// roPEBackward is kernels.Backend's RoPEBackward on the buffers' slices. A rotation's
// inverse is its transpose: the rotation by the negative angle.
func (be *Backend[F]) roPEBackward(dx []F, pos []int32, cos, sin []F, heads, d int) {
	parallelFor(len(pos), rowGrain, rotate[F]{be.impl(), dx, pos, cos, sin, heads, d, -1})
}

// rotate turns each pair of every head of row i by sign·angle(pos[i]).
type rotate[F kernels.Float] struct {
	im       *gemmImpl
	x        []F
	pos      []int32
	cos, sin []F
	heads, d int
	sign     F
}

func (t *rotate[F]) run(lo, hi int) {
	half, w := t.d/2, t.heads*t.d
	for i := lo; i < hi; i++ {
		p := int(t.pos[i])
		ropeRow(t.im, t.x[i*w:i*w+w], t.cos[p*half:p*half+half], t.sin[p*half:p*half+half], t.heads, t.sign)
	}
}

// ropeRow turns each pair (x[2j], x[2j+1]) of each of the heads heads of one row x
// [heads·2·len(cs)] by the angle whose cosine is cs[j] and sine sign·sn[j].
func ropeRow[F kernels.Float](im *gemmImpl, x, cs, sn []F, heads int, sign F) {
	if x32, ok := f32(im, x); ok && im.vec.rope != nil {
		im.vec.rope(x32, as32(cs), as32(sn), heads, float32(sign))
		return
	}
	d := 2 * len(cs)
	for h := range heads {
		xh := x[h*d : h*d+d]
		for j := range cs {
			a, b := xh[2*j], xh[2*j+1]
			c, s := cs[j], sign*sn[j]
			xh[2*j] = a*c - b*s
			xh[2*j+1] = a*s + b*c
		}
	}
}
