package model

import "github.com/herdml/herd/kernels"

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
// the residual streams on each side of them, computed in float64 by the backend (the
// read-backs of the activation statistics); the Forward itself keeps them only in scratch
// that the next layer overwrites. After SetCodec it measures the streams as the backward
// pass reads them, unpacked.
func (m *Model[F]) ActStats() ActStats {
	N, C, L := m.n, m.Cfg.DModel, len(m.layers)
	var xi, xn, none kernels.Buf[F] // where savedX unpacks x[i] and x[i+1]
	if m.codec != nil {
		xi, xn = kernels.Alloc[F](m.be, N*C), kernels.Alloc[F](m.be, N*C)
	}
	meanAbs := m.be.MeanAbsDiff
	s := ActStats{
		Embedding: meanAbs(m.savedX(0, xi), none),
		Attention: make([]float64, L), FFN: make([]float64, L), Residual: make([]float64, L),
		Logits: meanAbs(m.Logits(), none),
	}
	for i := range L {
		xmid, x, next := m.savedXmid(i), m.savedX(i, xi), m.savedX(i+1, xn)
		s.Attention[i] = meanAbs(xmid, x)
		s.FFN[i] = meanAbs(next, xmid)
		s.Residual[i] = meanAbs(next, none)
	}
	return s
}
