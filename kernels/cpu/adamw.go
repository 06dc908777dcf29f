package cpu

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// AdamWCoeffs are the scalars of one AdamW update of one tensor (see AdamW): the moment
// decays and their complements, the decoupled weight decay, the step size, the bias
// corrections and eps, all float64, and the factor the gradients are multiplied by first
// (the clipping factor, 1 for none).
type AdamWCoeffs struct {
	B1, C1   float64 // β1 and 1-β1
	B2, C2   float64 // β2 and 1-β2
	Decay    float64 // 1 - lr·wd
	LR       float64 // lr times the schedule's factor
	BC1, BC2 float64 // bias corrections 1-β1ᵗ and 1-β2ᵗ
	Eps      float64
	GScale   float64 // gradient factor, applied in the parameters' type
}

// AdamW updates the parameters p and the float32 moments m and v from the gradients g,
// element by element in float64, as torch.optim.AdamW does:
//
//	gr = float64(g·GScale)                    (in F: the product clipping used to store)
//	m = β1·m + (1-β1)·gr;  v = β2·v + (1-β2)·gr·gr
//	p = p·(1 - lr·wd) - lr·(m/bc1) / (sqrt(v/bc2) + eps)
//
// The loop below is the reference and the twin of the AVX-512 kernel, which runs the same
// float64 operations in the same order (8 lanes; division and square root are correctly
// rounded in both, and nothing is fused), so the two give the same bits. A vector kernel
// matters here because the three divisions and the square root per element keep the
// scalar loop on the divider, about 18 cycles per element, where the 8-lane divisions
// take about half that. Folding the clipping factor in saves clipping's own pass over
// the gradients.
func AdamW[F kernels.Float](p, g []F, m, v []float32, c AdamWCoeffs) {
	if p32, ok := f32(active, p); ok && active.vec.adamW != nil {
		active.vec.adamW(p32, as32(g), m, v, c)
		return
	}
	adamWGo(p, g, m, v, c)
}

// adamWGo is AdamW's loop, the twin of the vector kernels.
func adamWGo[F kernels.Float](p, g []F, m, v []float32, c AdamWCoeffs) {
	gs := F(c.GScale)
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	for i := range p {
		// The conversions round each product, so that no compiler fuses it into an FMA
		// (Go may, on some architectures and GOAMD64 levels): one rounding per operation.
		gr := float64(g[i] * gs)
		mi := float64(c.B1*float64(m[i])) + float64(c.C1*gr)
		vi := float64(c.B2*float64(v[i])) + float64(float64(c.C2*gr)*gr)
		m[i], v[i] = float32(mi), float32(vi)
		step := float64(c.LR*(mi/c.BC1)) / (math.Sqrt(vi/c.BC2) + c.Eps)
		p[i] = F(float64(float64(p[i])*c.Decay) - step)
	}
}
