package model

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// ActStats are the mean absolute values of the last Forward's activations, one number per
// activation kind and layer: what a coordinate check (`herd metap coord-check`) follows
// across widths and depths to see whether a parametrization keeps every activation's
// scale independent of the model's size.
type ActStats struct {
	Embedding float64   // x0, the embedded (and patch-projected) input stream
	Attention []float64 // per layer, the attention branch output added to the stream
	FFN       []float64 // per layer, the dense or MoE branch output added to the stream
	Residual  []float64 // per layer, the residual stream after the block
	Logits    float64
}

// ActStats measures the last Forward. The branch outputs are recovered as differences of
// the residual streams on each side of them, computed in float64; the Forward itself keeps
// them only in scratch that the next layer overwrites. After SetCodec it measures the
// streams as the backward pass reads them, unpacked.
func (m *Model[F]) ActStats() ActStats {
	N, C, L := m.n, m.Cfg.DModel, len(m.layers)
	var xi, xn []F // where savedX unpacks x[i] and x[i+1]
	if m.codec != nil {
		xi, xn = make([]F, N*C), make([]F, N*C)
	}
	s := ActStats{
		Embedding: meanAbs(m.savedX(0, xi), nil),
		Attention: make([]float64, L), FFN: make([]float64, L), Residual: make([]float64, L),
		Logits: meanAbs(m.Logits(), nil),
	}
	for i := range L {
		xmid, x, next := m.savedXmid(i), m.savedX(i, xi), m.savedX(i+1, xn)
		s.Attention[i] = meanAbs(xmid, x)
		s.FFN[i] = meanAbs(next, xmid)
		s.Residual[i] = meanAbs(next, nil)
	}
	return s
}

// meanAbs is the mean of |a - b| (of |a| when b is nil), summed in float64 in index order.
func meanAbs[F kernels.Float](a, b []F) float64 {
	sum := 0.0
	for i, v := range a {
		d := float64(v)
		if b != nil {
			d -= float64(b[i])
		}
		sum += math.Abs(d)
	}
	return sum / float64(len(a))
}
