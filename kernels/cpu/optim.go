package cpu

// The optimizer's element loops, run over blocks on the pool by the AdamW and SumSquares
// methods: AdamW's update and the gradient norm's sum of squares.

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// AdamWCoeffs is kernels.AdamWCoeffs, whose layout the assembly kernels read.
type AdamWCoeffs = kernels.AdamWCoeffs

// adamW updates the parameters p and the float32 moments m and v from the gradients g,
// element by element, as torch.optim.AdamW computes it, in the parameters' type F:
//
//	gr = g·GScale
//	m = m·β1 + gr·(1-β1);  v = v·β2 + gr·gr·(1-β2)
//	p = p·(1 - lr·wd) - StepSize·(m / (sqrt(v)/BC2Sqrt + eps))
//
// Why F and not float64: in float32 (training) the 16-lane kernel's division and square
// root cost about 2 cycles per element and the update runs at memory speed, where float64
// arithmetic kept it on the divider at 9 cycles (AVX-512) to 18 (scalar); PyTorch computes
// in the parameters' type too. float64 parameters (the gradient checks) get float64.
//
// The loop below is the reference and the twin of the AVX-512 kernel, which runs the same
// operations in the same order (division and square root correctly rounded in both, and
// nothing fused), so the two give the same bits.
func adamW[F kernels.Float](p, g []F, m, v []float32, c AdamWCoeffs) {
	if p32, ok := f32(active, p); ok && active.vec.adamW != nil {
		active.vec.adamW(p32, as32(g), m, v, c)
		return
	}
	adamWGo(p, g, m, v, c)
}

// adamWGo is AdamW's loop, the twin of the vector kernels.
func adamWGo[F kernels.Float](p, g []F, m, v []float32, c AdamWCoeffs) {
	gs, b1, c1, b2, c2 := F(c.GScale), F(c.B1), F(c.C1), F(c.B2), F(c.C2)
	decay, stepSize, bc2s, eps := F(c.Decay), F(c.StepSize), F(c.BC2Sqrt), F(c.Eps)
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	for i := range p {
		// The conversions round each product, so that no compiler fuses it into an FMA
		// (Go may, on some architectures and GOAMD64 levels): one rounding per operation.
		gr := g[i] * gs
		mi := F(F(m[i])*b1) + F(gr*c1)
		vi := F(F(v[i])*b2) + F(F(gr*gr)*c2)
		m[i], v[i] = float32(mi), float32(vi)
		denom := F(math.Sqrt(float64(vi)))/bc2s + eps // a float32 square root through float64 is correctly rounded
		p[i] = F(p[i]*decay) - F(stepSize*(mi/denom))
	}
}

// sumSquares64 returns Σ x² in float64, in 8 lanes (lane j takes elements j, j+8, ...)
// added pairwise at the end (lanes 0..3 += 4..7, 0,1 += 2,3, 0 += 1): the order of the
// AVX-512 kernel, which gives the same bits. The gradient norm's blocks are summed so;
// one running sum, element after element, was bound by the latency of its additions.
func sumSquares64[F kernels.Float](x []F) float64 {
	if x32, ok := f32(active, x); ok && active.vec.sumSquares64 != nil {
		return active.vec.sumSquares64(x32)
	}
	return sumSquares64Go(x)
}

// sumSquares64Go is sumSquares64's loop, the twin of the vector kernels.
func sumSquares64Go[F kernels.Float](x []F) float64 {
	var l [8]float64
	for i, v := range x {
		l[i%8] += float64(float64(v) * float64(v)) // rounded before the sum: never fused
	}
	for w := 4; w >= 1; w /= 2 {
		for i := range w {
			l[i] += l[i+w]
		}
	}
	return l[0]
}
