package model

import (
	"fmt"

	"github.com/herdml/herd/kernels"
)

// SetLinears hands the GEMMs of every hidden and expert matrix (q/k/v/o, the dense and
// shared SwiGLUs' w1/w3/w2, each routed expert's w1/w3/w2) to a Linear that newLinear
// makes, e.g. an FP8 linear layer. newLinear gets the matrix's name ("layers.0.attn.wq",
// an expert's with its index: "layers.1.moe.experts.w1.3") and, when the matrix reads the
// same input as one made before it, which then runs just before it on that very input, that
// one's Linear (k and v: q's, w3: w1's), so that the input can be converted once. It is
// called in the order of the forward pass.
//
// Since each Linear keeps its own copy of its input for the backward pass, the model stops
// keeping float32 copies of the linears' inputs: the norm outputs h1 and h2 and the
// gathered expert inputs hg live in the activation-gradient scratch (dh, dy), which no
// forward reads otherwise, and the SwiGLU outputs u in one buffer shared by all layers (h2,
// which the float32 router's backward needs, is recomputed there). So does the SwiGLU's
// sigmoid(a1), which its backward recomputes from a1 in one elementwise pass. LoRA adapters
// keep their own copy of their input for the same reason, and run in float32 beside the
// Linear. Call it before the first Forward, when those per-layer buffers have not been
// touched yet.
func (m *Model[F]) SetLinears(newLinear func(name string, first Linear[F]) Linear[F]) {
	m.linears = map[uintptr]Linear[F]{}
	m.keepInputs()
	add := func(t, expert int, first Linear[F]) Linear[F] {
		name, w := m.Layout.Tensors[t].Name, m.w(t)
		if expert >= 0 {
			sz := m.Cfg.MoE.ExpertHidden * m.Cfg.DModel
			name, w = fmt.Sprintf("%s.%d", name, expert), w.From(expert*sz)
		}
		l := newLinear(name, first)
		m.linears[w.Addr()] = l
		return l
	}
	swiglu := func(w1, w3, w2, expert int) {
		add(w3, expert, add(w1, expert, nil))
		add(w2, expert, nil)
	}
	for _, l := range m.layers {
		q := add(l.wq, -1, nil)
		add(l.wk, -1, q)
		add(l.wv, -1, q)
		add(l.wo, -1, nil)
		if !l.moe {
			swiglu(l.w1, l.w3, l.w2, -1)
			continue
		}
		if m.Cfg.MoE.SharedExpert {
			swiglu(l.sw1, l.sw3, l.sw2, -1)
		}
		for e := range m.Cfg.MoE.Experts {
			swiglu(l.ew1, l.ew3, l.ew2, e)
		}
	}

	N, C := m.microBatch*m.Cfg.SeqLen, m.Cfg.DModel
	var nu int
	for _, a := range m.acts {
		nu = max(nu, a.ffn.u.Len(), a.experts.u.Len())
	}
	u, sig := kernels.Alloc[F](m.be, nu), kernels.Alloc[F](m.be, nu)
	for i := range m.acts {
		a := &m.acts[i]
		a.h1, a.h2, a.hg = m.g.dh.Slice(0, N*C), m.g.dh.Slice(0, N*C), m.g.dy.Slice(0, a.hg.Len())
		a.ffn.u, a.experts.u = u.Slice(0, a.ffn.u.Len()), u.Slice(0, a.experts.u.Len())
		a.ffn.s, a.experts.s = sig.Slice(0, a.ffn.s.Len()), sig.Slice(0, a.experts.s.Len())
	}
}

// LinearOperandMax is the largest operand, in values, that a Linear of SetLinears gets:
// the largest of rows·in, rows·out and out·in over the model's hidden and expert matrices,
// rows being a micro-batch's positions (a routed expert gets at most that many, since a
// position picks distinct experts). FP8 linears size their shared workspace with it.
func (m *Model[F]) LinearOperandMax() int {
	rows, most := m.microBatch*m.Cfg.SeqLen, 0
	for _, l := range m.layers {
		for _, t := range []int{l.wq, l.wk, l.wv, l.wo, l.w1, l.w3, l.w2, l.ew1, l.ew3, l.ew2, l.sw1, l.sw3, l.sw2} {
			if t < 0 {
				continue
			}
			sh := m.Layout.Tensors[t].Shape
			out, in := sh[len(sh)-2], sh[len(sh)-1]
			most = max(most, rows*in, rows*out, out*in)
		}
	}
	return most
}
