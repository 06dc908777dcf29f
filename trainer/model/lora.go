package model

import (
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/metap"
)

// LoRA (Hu et al. 2021) adapts a matrix W [out, in] of the model with two trainable ones,
// A [r, in] and B [out, r], while W stays frozen. The adapted layer computes
//
//	y = s·(x·Wᵀ + c·(x·Aᵀ)·Bᵀ),  c = α/r
//
// with s the tensor's forward multiplier (MetaP's), so that merging the adapter gives the
// plain layer of W + c·B·A (Merge). The adapters are tensors of the layout like any other,
// named after their target ("layers.0.attn.wq.lora_a", ".lora_b"), after the base tensors,
// so that checkpoints and exports name them and the base keeps its offsets.

// Adapter is one adapted matrix: tensor indices of the target and of A and B.
type Adapter struct{ Target, A, B int }

// AddLoRA appends an adapter of rank r for every target (tensor indices of 2-D matrices
// whose products go through the model's linear layers: the attention's and the dense and
// shared SwiGLUs' matrices), with scale c = alpha/r, and freezes every other tensor.
func (l *Layout) AddLoRA(targets []int, r int, alpha float64) {
	for _, ti := range targets {
		t := l.Tensors[ti]
		out, in := t.Shape[0], t.Shape[1]
		a := Tensor{Name: t.Name + ".lora_a", Shape: []int{r, in}, Class: metap.LoRAA}
		b := Tensor{Name: t.Name + ".lora_b", Shape: []int{out, r}, Class: metap.LoRAB}
		l.add(a)
		l.add(b)
		l.Adapters = append(l.Adapters, Adapter{Target: ti, A: len(l.Tensors) - 2, B: len(l.Tensors) - 1})
	}
	l.LoRAScale = alpha / float64(r)
	l.Freeze(func(t Tensor) bool { return t.Class != metap.LoRAA && t.Class != metap.LoRAB })
}

// BaseTotal is the number of elements of the tensors before the adapters.
func (l *Layout) BaseTotal() int {
	if len(l.Adapters) == 0 {
		return l.Total
	}
	return l.Tensors[l.Adapters[0].A].Offset
}

// LoRATarget says whether tensor t of a layout can carry an adapter.
func LoRATarget(t Tensor) bool {
	return len(t.Shape) == 2 && (t.Class == metap.Hidden || t.Class == metap.Expert)
}

// adapter is an Adapter in a model: A and B, and the forward's c·x·Aᵀ that the backward
// reads.
type adapter[F kernels.Float] struct {
	a, b int            // tensor indices
	xa   kernels.Buf[F] // [N, r] c·x·Aᵀ of the last forward
}

// setAdapters makes the model run its layout's adapters in mm and mmBackward, keyed by the
// address of their target's weights as SetLinears' Linears are.
func (m *Model[F]) setAdapters() {
	if len(m.Layout.Adapters) == 0 {
		return
	}
	N := m.microBatch * m.Cfg.SeqLen
	m.adapters = map[uintptr]*adapter[F]{}
	r := 0
	for _, ad := range m.Layout.Adapters {
		r = m.Layout.Tensors[ad.A].Shape[0]
		m.adapters[m.w(ad.Target).Addr()] = &adapter[F]{a: ad.A, b: ad.B, xa: kernels.Alloc[F](m.be, N*r)}
	}
	m.loraTmp = kernels.Alloc[F](m.be, N*r)
}

// adapterForward adds c·(x·Aᵀ)·Bᵀ to y (before mm scales y by s) and keeps c·x·Aᵀ.
//
//	y: [n, out]  x: [n, in]
func (m *Model[F]) adapterForward(ad *adapter[F], y, x kernels.Buf[F], n, in, out int) {
	r := m.Layout.Tensors[ad.a].Shape[0]
	xa := ad.xa.Slice(0, n*r)
	m.be.MatMul(xa, x, m.w(ad.a), n, in, r, false, true, false)
	m.be.Scale(xa, F(m.Layout.LoRAScale))
	m.be.MatMul(y, xa, m.w(ad.b), n, r, out, false, true, true)
}

// adapterBackward is adapterForward's backward, from dy already scaled by s: with
// xa = c·x·Aᵀ, dB += dyᵀ·xa, and with u = c·dy·B, dA += uᵀ·x and dx += u·A.
func (m *Model[F]) adapterBackward(ad *adapter[F], dx, dy, x kernels.Buf[F], n, in, out int) {
	r := m.Layout.Tensors[ad.a].Shape[0]
	m.be.MatMul(m.dw(ad.b), dy, ad.xa.Slice(0, n*r), out, n, r, true, false, true)
	u := m.loraTmp.Slice(0, n*r)
	m.be.MatMul(u, dy, m.w(ad.b), n, out, r, false, false, false)
	m.be.Scale(u, F(m.Layout.LoRAScale))
	m.be.MatMul(m.dw(ad.a), u, x, r, n, in, true, false, true)
	m.be.MatMul(dx, u, m.w(ad.a), n, r, in, false, false, true)
}

// Merge returns the base weights (the tensors before the first adapter: NewLayout of the
// same config) with every adapter folded in: W + c·B·A for each target, computed on the
// host in float32 as
//
//	W'[i,j] = W[i,j] + c·Σₖ B[i,k]·A[k,j]   (k ascending, each product rounded to float32)
//
// so that any implementation of that loop gives the same bits. Other tensors are copied.
func Merge(lay *Layout, params []float32) []float32 {
	out := make([]float32, lay.BaseTotal())
	copy(out, params)
	c := float32(lay.LoRAScale)
	for _, ad := range lay.Adapters {
		t, a, b := lay.Tensors[ad.Target], lay.Tensors[ad.A], lay.Tensors[ad.B]
		rows, in, r := t.Shape[0], t.Shape[1], a.Shape[0]
		W := out[t.Offset : t.Offset+t.Size()]
		A, B := params[a.Offset:a.Offset+a.Size()], params[b.Offset:b.Offset+b.Size()]
		for i := range rows {
			for j := range in {
				var s float32
				for k := range r {
					s += float32(B[i*r+k] * A[k*in+j]) // the conversion forbids a fused multiply-add
				}
				W[i*in+j] += float32(c * s)
			}
		}
	}
	return out
}
