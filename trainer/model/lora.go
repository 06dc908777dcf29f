package model

import (
	"math/rand/v2"

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
//
// Dropout (LoRA's, PEFT's lora_dropout) with probability p replaces x in the adapter's
// branch by x⊙mask, mask values 0 (probability p) or 1/(1-p), and only in training
// forwards (SetDropout). The mask is a function of the run's seed, the optimizer step, the
// sequence's index in the step's global batch, its position, the adapter and the feature
// (dropoutMask), so that a run draws the same masks on every world size and on resume.

// Adapter is one adapted matrix: tensor indices of the target and of A and B.
type Adapter struct{ Target, A, B int }

// AddLoRA appends an adapter of rank r for every target (tensor indices of 2-D matrices
// whose products go through the model's linear layers: the attention's and the dense and
// shared SwiGLUs' matrices), with scale c = alpha/r and input dropout p, and freezes every
// other tensor.
func (l *Layout) AddLoRA(targets []int, r int, alpha, dropout float64) {
	l.LoRADropout = dropout
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
// reads; with dropout, the forward's mask and dropped input too.
type adapter[F kernels.Float] struct {
	a, b     int            // tensor indices
	index    uint64         // position in Layout.Adapters, which keys its dropout masks
	xa       kernels.Buf[F] // [N, r] c·x·Aᵀ of the last forward
	mask, xd kernels.Buf[F] // [N, in] dropout mask, and x⊙mask of the last training forward (or x itself, see keepInputs)
	dropped  bool           // whether the last forward applied the mask
	keep     bool           // whether xd keeps x when no mask applies (keepInputs)
}

// DropoutKey says which masks a training forward's adapter dropout draws.
type DropoutKey struct {
	Seed   uint64 // the run's seed
	Step   int64  // the optimizer step being computed, from 1
	Sample int64  // index, in the step's global batch, of the batch's first sequence
}

// SetDropout turns the adapters' dropout on for the next Forwards with masks keyed by k
// (training), or off with nil (evaluation, generation: the default).
func (m *Model[F]) SetDropout(k *DropoutKey) { m.dropKey = k }

// setAdapters makes the model run its layout's adapters in mm and mmBackward, keyed by the
// address of their target's weights as SetLinears' Linears are.
func (m *Model[F]) setAdapters() {
	if len(m.Layout.Adapters) == 0 {
		return
	}
	N, drop := m.microBatch*m.Cfg.SeqLen, m.Layout.LoRADropout > 0
	r, in := m.Layout.loraSizes()
	m.adapters = map[uintptr]*adapter[F]{}
	for i, ad := range m.Layout.Adapters {
		a := &adapter[F]{a: ad.A, b: ad.B, index: uint64(i), xa: kernels.Alloc[F](m.be, N*r)}
		if drop {
			a.mask, a.xd = kernels.Alloc[F](m.be, N*in), kernels.Alloc[F](m.be, N*in)
		}
		m.adapters[m.w(ad.Target).Addr()] = a
	}
	m.loraTmp = kernels.Alloc[F](m.be, N*r)
	if drop {
		// The backend has no elementwise product: x⊙mask is GatherRows over rows of one
		// value with the identity index and the mask as the rows' weights.
		m.loraIdent = kernels.Alloc[int32](m.be, N*in)
		id := kernels.ToHost(m.be, m.loraIdent)
		for i := range id {
			id[i] = int32(i)
		}
		kernels.Upload(m.be, m.loraIdent, id)
		m.loraDx, m.loraDxd = kernels.Alloc[F](m.be, N*in), kernels.Alloc[F](m.be, N*in)
	}
}

// loraSizes are the adapters' rank and their largest input width.
func (l *Layout) loraSizes() (r, in int) {
	for _, ad := range l.Adapters {
		r, in = l.Tensors[ad.A].Shape[0], max(in, l.Tensors[ad.A].Shape[1])
	}
	return r, in
}

// loraActivations is the number of values the adapters allocate per token (NewWithLayout):
// c·x·Aᵀ of each and the backward's scratch, r each; with dropout, each one's mask and
// dropped input and three buffers of the backward (the identity index among them), in
// each of the largest input width.
func (l *Layout) loraActivations() int64 {
	if len(l.Adapters) == 0 {
		return 0
	}
	r, in := l.loraSizes()
	n := int64(len(l.Adapters)+1) * int64(r)
	if l.LoRADropout > 0 {
		n += int64(2*len(l.Adapters)+3) * int64(in)
	}
	return n
}

// keepInputs makes every adapter keep its own copy of its input x for the backward, as
// SetLinears' Linears do: after SetLinears the model's activations that x lives in are
// scratch that later layers overwrite, or empty. It also gives the backward the scratch
// it then computes its part of dx in (mmBackward).
func (m *Model[F]) keepInputs() {
	if len(m.adapters) == 0 {
		return
	}
	N := m.microBatch * m.Cfg.SeqLen
	_, in := m.Layout.loraSizes()
	for _, ad := range m.adapters {
		if ad.xd.Len() == 0 {
			ad.xd = kernels.Alloc[F](m.be, N*in)
		}
		ad.keep = true
	}
	if m.loraDx.Len() == 0 {
		m.loraDx, m.loraDxd = kernels.Alloc[F](m.be, N*in), kernels.Alloc[F](m.be, N*in)
	}
}

// dropoutMask fills ad.mask for rows of the last batch (n = B·T, the model's m.t per
// sequence) and in features: each row's values come from a PCG stream seeded by the key,
// the row's sequence and position and the adapter, uniform u in [0, 1) per feature, kept
// (1/(1-p)) when u >= p. It is drawn on the host and uploaded, a crossing of the training
// forward like the batch upload (none on a host backend, whose memory the mask is).
func (m *Model[F]) dropoutMask(ad *adapter[F], n, in int) {
	k, p := m.dropKey, m.Layout.LoRADropout
	mask := kernels.ToHost(m.be, ad.mask)[:n*in]
	keep := F(1 / (1 - p))
	var pcg rand.PCG
	for row := range n {
		seq, pos := k.Sample+int64(row/m.t), uint64(row%m.t)
		pcg.Seed(splitmix(k.Seed^splitmix(uint64(k.Step))), splitmix(splitmix(splitmix(uint64(seq))^pos)^ad.index))
		for j := range in {
			mask[row*in+j] = 0
			if float64(pcg.Uint64()>>11)/(1<<53) >= p {
				mask[row*in+j] = keep
			}
		}
	}
	kernels.Upload(m.be, ad.mask.Slice(0, n*in), mask)
}

// splitmix is SplitMix64's finaliser: a bijective mix of v's bits, so that keys that
// differ in one bit seed unrelated streams.
func splitmix(v uint64) uint64 {
	v += 0x9e3779b97f4a7c15
	v = (v ^ v>>30) * 0xbf58476d1ce4e5b9
	v = (v ^ v>>27) * 0x94d049bb133111eb
	return v ^ v>>31
}

// adapterForward adds k·(x·Aᵀ)·Bᵀ to y and keeps xa = k·x·Aᵀ: k is c when mm scales y by
// s after, c·s when a Linear has already scaled its part of y.
//
//	y: [n, out]  x: [n, in]
func (m *Model[F]) adapterForward(ad *adapter[F], y, x kernels.Buf[F], n, in, out int, k F) {
	r := m.Layout.Tensors[ad.a].Shape[0]
	xa := ad.xa.Slice(0, n*r)
	ad.dropped = m.dropKey != nil && m.Layout.LoRADropout > 0
	switch xd := ad.xd.Slice(0, min(n*in, ad.xd.Len())); {
	case ad.dropped:
		m.dropoutMask(ad, n, in)
		m.be.GatherRows(xd, x, m.loraIdent.Slice(0, n*in), ad.mask.Slice(0, n*in), 1)
		x = xd
	case ad.keep:
		kernels.Copy(m.be, xd, x.Slice(0, n*in))
	}
	m.be.MatMul(xa, x, m.w(ad.a), n, in, r, false, true, false)
	m.be.Scale(xa, k)
	m.be.MatMul(y, xa, m.w(ad.b), n, r, out, false, true, true)
}

// adapterBackward is adapterForward's backward, with the same k, from dy: scaled by s
// already when k = c, unscaled when k = c·s. With xa = k·x'·Aᵀ, dB += dyᵀ·xa, and with
// u = k·dy·B, dA += uᵀ·x' and dx = (u·A)⊙mask (dx += … when accumulate), where x' is
// x⊙mask with dropout and x without (mask 1); x' is the adapter's own copy when it keeps
// one.
func (m *Model[F]) adapterBackward(ad *adapter[F], dx, dy, x kernels.Buf[F], n, in, out int, k F, accumulate bool) {
	r := m.Layout.Tensors[ad.a].Shape[0]
	m.be.MatMul(m.dw(ad.b), dy, ad.xa.Slice(0, n*r), out, n, r, true, false, true)
	u := m.loraTmp.Slice(0, n*r)
	m.be.MatMul(u, dy, m.w(ad.b), n, out, r, false, false, false)
	m.be.Scale(u, k)
	if ad.dropped || ad.keep {
		x = ad.xd.Slice(0, n*in)
	}
	m.be.MatMul(m.dw(ad.a), u, x, r, n, in, true, false, true)
	if !ad.dropped {
		m.be.MatMul(dx, u, m.w(ad.a), n, r, in, false, false, accumulate)
		return
	}
	d := m.loraDx.Slice(0, n*in)
	m.be.MatMul(d, u, m.w(ad.a), n, r, in, false, false, false)
	if !accumulate {
		m.be.GatherRows(dx, d, m.loraIdent.Slice(0, n*in), ad.mask.Slice(0, n*in), 1)
		return
	}
	dd := m.loraDxd.Slice(0, n*in)
	m.be.GatherRows(dd, d, m.loraIdent.Slice(0, n*in), ad.mask.Slice(0, n*in), 1)
	m.be.Axpy(dx, dd, 1)
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
