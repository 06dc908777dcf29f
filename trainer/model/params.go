package model

import (
	"fmt"

	"github.com/herdml/herd/metap"
)

// Tensor is one named parameter inside the flat parameter buffer.
type Tensor struct {
	Name   string      // e.g. "layers.3.attn.wq"; the export and checkpoint name
	Shape  []int       // row-major; matrices are [out, in] as in torch.nn.Linear
	Offset int         // first element in the flat buffer
	Class  metap.Class // role, for init and learning-rate rules
	// Grad is the first element of the tensor's gradient in the flat gradient buffer (and
	// in the optimizer's moments), or -1 for a frozen tensor, which has neither: see
	// Layout.Freeze.
	Grad int
}

// Frozen says whether the tensor is left out of training (Layout.Freeze).
func (t Tensor) Frozen() bool { return t.Grad < 0 }

// Size is the number of elements.
func (t Tensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Layout is the ordered table of every parameter. Parameters use it over one flat
// buffer; gradients and optimizer moments use its trainable tensors, in the same order,
// over one flat buffer each (Tensor.Grad), so the optimizer is one loop and a frozen
// tensor costs no gradient or optimizer memory. Without frozen tensors both are the same
// layout (Grad = Offset).
type Layout struct {
	Tensors     []Tensor
	Total       int            // elements in all tensors
	Trainable   int            // elements in the trainable tensors: the gradient buffer's size
	Adapters    []Adapter      // LoRA adapters (AddLoRA), in the order of their targets
	LoRAScale   float64        // α/r of the adapters
	LoRADropout float64        // probability of dropping an adapter's input feature in training
	index       map[string]int // name -> position in Tensors
}

// Lookup returns the tensor with the given name.
func (l *Layout) Lookup(name string) (Tensor, bool) {
	i, ok := l.index[name]
	if !ok {
		return Tensor{}, false
	}
	return l.Tensors[i], true
}

// NewLayout lists the parameters of cfg in their fixed order. Legend: V vocab, C d_model,
// H heads, K kv heads, D head dim, F ffn hidden, E experts, G expert hidden, P patch pixels.
//
//	tok_embeddings.weight          [V, C]
//	patch_proj.weight              [C, P]     (vision only)
//	layers.i.attn_norm.weight      [C]
//	layers.i.attn.wq               [H*D, C]
//	layers.i.attn.wk               [K*D, C]
//	layers.i.attn.wv               [K*D, C]
//	layers.i.attn.wo               [C, H*D]
//	layers.i.ffn_norm.weight       [C]
//	dense layer:
//	layers.i.ffn.w1                [F, C]     gate
//	layers.i.ffn.w3                [F, C]     up
//	layers.i.ffn.w2                [C, F]     down
//	MoE layer:
//	layers.i.moe.router            [E, C]
//	layers.i.moe.experts.w1        [E, G, C]
//	layers.i.moe.experts.w3        [E, G, C]
//	layers.i.moe.experts.w2        [E, C, G]
//	layers.i.moe.shared.w1         [G, C]     (shared_expert only)
//	layers.i.moe.shared.w3         [G, C]
//	layers.i.moe.shared.w2         [C, G]
//	norm.weight                    [C]
//	output.weight                  [V, C]
func NewLayout(cfg Config) *Layout {
	l := &Layout{index: map[string]int{}}
	add := func(class metap.Class, shape []int, format string, args ...any) {
		l.add(Tensor{Name: fmt.Sprintf(format, args...), Shape: shape, Class: class})
	}
	V, C, D := cfg.VocabSize, cfg.DModel, cfg.HeadDim()
	H, K, F := cfg.NHeads, cfg.NKVHeads, cfg.FFNHidden
	E, G := cfg.MoE.Experts, cfg.MoE.ExpertHidden

	add(metap.Embedding, []int{V, C}, "tok_embeddings.weight")
	if P := cfg.PatchPixels(); P > 0 {
		add(metap.Patch, []int{C, P}, "patch_proj.weight")
	}
	for i := range cfg.NLayers {
		add(metap.Gain, []int{C}, "layers.%d.attn_norm.weight", i)
		add(metap.Hidden, []int{H * D, C}, "layers.%d.attn.wq", i)
		add(metap.Hidden, []int{K * D, C}, "layers.%d.attn.wk", i)
		add(metap.Hidden, []int{K * D, C}, "layers.%d.attn.wv", i)
		add(metap.Hidden, []int{C, H * D}, "layers.%d.attn.wo", i)
		add(metap.Gain, []int{C}, "layers.%d.ffn_norm.weight", i)
		if !cfg.IsMoE(i) {
			add(metap.Hidden, []int{F, C}, "layers.%d.ffn.w1", i)
			add(metap.Hidden, []int{F, C}, "layers.%d.ffn.w3", i)
			add(metap.Hidden, []int{C, F}, "layers.%d.ffn.w2", i)
			continue
		}
		add(metap.Router, []int{E, C}, "layers.%d.moe.router", i)
		add(metap.Expert, []int{E, G, C}, "layers.%d.moe.experts.w1", i)
		add(metap.Expert, []int{E, G, C}, "layers.%d.moe.experts.w3", i)
		add(metap.Expert, []int{E, C, G}, "layers.%d.moe.experts.w2", i)
		if cfg.MoE.SharedExpert {
			add(metap.Expert, []int{G, C}, "layers.%d.moe.shared.w1", i)
			add(metap.Expert, []int{G, C}, "layers.%d.moe.shared.w3", i)
			add(metap.Expert, []int{C, G}, "layers.%d.moe.shared.w2", i)
		}
	}
	add(metap.Gain, []int{C}, "norm.weight")
	add(metap.Readout, []int{V, C}, "output.weight")
	return l
}

// add appends t after the last tensor, trainable.
func (l *Layout) add(t Tensor) {
	t.Offset, t.Grad = l.Total, l.Trainable
	l.index[t.Name] = len(l.Tensors)
	l.Tensors = append(l.Tensors, t)
	l.Total += t.Size()
	l.Trainable += t.Size()
}

// Freeze leaves the tensors for which frozen is true out of training: they keep their
// place in the parameters, lose theirs in the gradients and optimizer moments, and the
// trainable tensors are packed again in layout order.
func (l *Layout) Freeze(frozen func(Tensor) bool) {
	l.Trainable = 0
	for i := range l.Tensors {
		t := &l.Tensors[i]
		t.Grad = -1
		if !frozen(*t) {
			t.Grad = l.Trainable
			l.Trainable += t.Size()
		}
	}
}
