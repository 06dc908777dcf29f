package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/metap"
)

// loraModel is the test model with rank-2 adapters on attention, dense and shared-expert
// matrices (layer 1 is the MoE layer), every other tensor frozen.
func loraModel[F float32 | float64](t *testing.T, B int, dropout float64) *Model[F] {
	t.Helper()
	cfg := testConfig()
	lay := NewLayout(cfg)
	var targets []int
	for _, name := range []string{"layers.0.attn.wq", "layers.0.attn.wo", "layers.0.ffn.w2", "layers.1.moe.shared.w1", "layers.2.attn.wv"} {
		targets = append(targets, lay.index[name])
	}
	lay.AddLoRA(targets, 2, 3, dropout)
	m := NewWithLayout[F](cfg, lay, device.CPU[F](), B)
	ref := newTestModel[F](cfg, B) // the same base weights, gains and multipliers
	copy(m.Params.Host(), ref.Params.Host())
	copy(m.Mult, ref.Mult)
	m.AttnScale = ref.AttnScale
	return m
}

// TestLoRAGradients checks the adapters' gradients against finite differences, with B = 0
// as LoRA starts (dA is then exactly 0) and with a random B, in float64, without and with
// dropout on the adapters' input.
func TestLoRAGradients(t *testing.T) {
	for _, c := range []struct{ zeroB, dropout bool }{{true, false}, {false, false}, {false, true}} {
		zeroB, dropout := c.zeroB, 0.0
		if c.dropout {
			dropout = 0.4
		}
		m := loraModel[float64](t, 2, dropout)
		if c.dropout {
			m.SetDropout(&DropoutKey{Seed: 1, Step: 3, Sample: 5})
		}
		b := testBatch(m.Cfg, 2, 1)
		rng := rand.New(rand.NewPCG(4, 4))
		params := m.Params.Host()
		for _, ad := range m.Layout.Adapters {
			for _, i := range []int{ad.A, ad.B} {
				tn := m.Layout.Tensors[i]
				for j := range tn.Size() {
					params[tn.Offset+j] = 0.5 * rng.NormFloat64()
					if zeroB && tn.Class == metap.LoRAB {
						params[tn.Offset+j] = 0
					}
				}
			}
		}
		if want := adapterElems(m.Layout); m.Grads.Len() != want || m.Layout.Trainable != want {
			t.Fatalf("gradient buffer has %d values, want the adapters' %d", m.Grads.Len(), want)
		}
		loss := func() float64 {
			r := m.Forward(b)
			return r.Loss + r.Aux
		}
		loss()
		m.Backward(1)
		const h = 1e-5
		for _, tn := range m.Layout.Tensors {
			if tn.Frozen() {
				continue
			}
			for j := range tn.Size() {
				p := params[tn.Offset+j]
				params[tn.Offset+j] = p + h
				up := loss()
				params[tn.Offset+j] = p - h
				down := loss()
				params[tn.Offset+j] = p
				num, ana := (up-down)/(2*h), m.Grads.Host()[tn.Grad+j]
				if zeroB && tn.Class == metap.LoRAA && ana != 0 {
					t.Errorf("B = 0: %s[%d] has gradient %g, want exactly 0", tn.Name, j, ana)
				}
				if math.Abs(num-ana) > 1e-6*math.Max(math.Abs(num), math.Abs(ana))+1e-9 {
					t.Errorf("zero B %v, dropout %g: %s[%d]: backward %.10g, finite difference %.10g", zeroB, dropout, tn.Name, j, ana, num)
				}
			}
		}
	}
}

func adapterElems(l *Layout) int {
	n := 0
	for _, ad := range l.Adapters {
		n += l.Tensors[ad.A].Size() + l.Tensors[ad.B].Size()
	}
	return n
}

// TestLoRAZeroBIsBase checks that adapters with B = 0 leave the model's output the base
// model's, bit for bit.
func TestLoRAZeroBIsBase(t *testing.T) {
	m := loraModel[float32](t, 2, 0)
	base := newTestModel[float32](m.Cfg, 2)
	for _, ad := range m.Layout.Adapters {
		a := m.Layout.Tensors[ad.A]
		for j := range a.Size() {
			m.Params.Host()[a.Offset+j] = 0.3
		}
	}
	b := testBatch(m.Cfg, 2, 7)
	if got, want := m.Forward(b).Loss, base.Forward(b).Loss; got != want {
		t.Fatalf("loss with B = 0 is %v, the base model's %v", got, want)
	}
}

// TestMergeMatchesAdaptedForward checks that the merged weights compute what the adapted
// model computes, up to float32 rounding, and that Merge is W + c·B·A as its loop says.
func TestMergeMatchesAdaptedForward(t *testing.T) {
	m := loraModel[float32](t, 2, 0)
	rng := rand.New(rand.NewPCG(6, 6))
	for _, ad := range m.Layout.Adapters {
		for _, i := range []int{ad.A, ad.B} {
			tn := m.Layout.Tensors[i]
			for j := range tn.Size() {
				m.Params.Host()[tn.Offset+j] = float32(0.3 * rng.NormFloat64())
			}
		}
	}
	merged := Merge(m.Layout, m.Params.Host())
	plain := New[float32](m.Cfg, device.CPU[float32](), 2)
	copy(plain.Params.Host(), merged)
	copy(plain.Mult, m.Mult)
	plain.AttnScale = m.AttnScale
	b := testBatch(m.Cfg, 2, 3)
	got, want := plain.Forward(b).Loss, m.Forward(b).Loss
	if math.Abs(got-want) > 1e-5*math.Abs(want) {
		t.Fatalf("merged model's loss %v, adapted model's %v", got, want)
	}
}

// TestFrozenTensorsKeepOthersGradients checks that freezing tensors leaves them without
// gradient memory and the other tensors' gradients as without freezing, bit for bit.
func TestFrozenTensorsKeepOthersGradients(t *testing.T) {
	cfg := testConfig()
	full := newTestModel[float32](cfg, 2)
	lay := NewLayout(cfg)
	frozen := map[string]bool{"tok_embeddings.weight": true, "patch_proj.weight": true, "layers.0.attn.wq": true,
		"layers.0.attn_norm.weight": true, "layers.1.moe.experts.w1": true, "layers.2.ffn.w2": true}
	lay.Freeze(func(t Tensor) bool { return frozen[t.Name] })
	m := NewWithLayout[float32](cfg, lay, device.CPU[float32](), 2)
	copy(m.Params.Host(), full.Params.Host())
	copy(m.Mult, full.Mult)
	m.AttnScale = full.AttnScale
	b := testBatch(cfg, 2, 2)
	full.Forward(b)
	full.Backward(1)
	m.Forward(b)
	m.Backward(1)
	want := full.Layout.Total
	for _, tn := range lay.Tensors {
		if frozen[tn.Name] {
			want -= tn.Size()
			if !tn.Frozen() {
				t.Errorf("%s is not frozen", tn.Name)
			}
			continue
		}
		got, ref := m.Grads.Host()[tn.Grad:tn.Grad+tn.Size()], full.Grads.Host()[tn.Offset:tn.Offset+tn.Size()]
		for j := range got {
			if got[j] != ref[j] {
				t.Fatalf("%s[%d]: gradient %v with others frozen, %v without", tn.Name, j, got[j], ref[j])
			}
		}
	}
	if m.Grads.Len() != want {
		t.Errorf("gradient buffer of %d values, want %d", m.Grads.Len(), want)
	}
}

// TestLoRADropoutMasks checks that dropout changes the training forward, draws its masks
// by sequence and position alone (a batch of two sequences computes what its halves do
// with their own Sample), and is off without a key.
func TestLoRADropoutMasks(t *testing.T) {
	m := loraModel[float32](t, 2, 0.5)
	rng := rand.New(rand.NewPCG(8, 8))
	for _, ad := range m.Layout.Adapters {
		for _, i := range []int{ad.A, ad.B} {
			tn := m.Layout.Tensors[i]
			for j := range tn.Size() {
				m.Params.Host()[tn.Offset+j] = float32(rng.NormFloat64())
			}
		}
	}
	cfg := m.Cfg
	cfg.Vision = Vision{}
	b := testBatch(cfg, 2, 4)
	plain := m.Forward(b).Loss
	m.SetDropout(&DropoutKey{Seed: 1, Step: 2, Sample: 10})
	both := m.Forward(b)
	if both.Loss == plain {
		t.Fatal("dropout 0.5 left the loss as it was")
	}
	var halves float64
	for s := range 2 {
		T := b.T
		h := *b
		h.B, h.Tokens, h.Targets, h.Mask, h.Pos, h.Doc = 1, b.Tokens[s*T:s*T+T], b.Targets[s*T:s*T+T], b.Mask[s*T:s*T+T], b.Pos[s*T:s*T+T], b.Doc[s*T:s*T+T]
		m.SetDropout(&DropoutKey{Seed: 1, Step: 2, Sample: int64(10 + s)})
		r := m.Forward(&h)
		halves += r.Loss * r.Tokens
	}
	if d := math.Abs(halves/both.Tokens - both.Loss); d > 1e-5 {
		t.Errorf("two sequences in one batch: loss %v; one by one: %v", both.Loss, halves/both.Tokens)
	}
	m.SetDropout(nil)
	if got := m.Forward(b).Loss; got != plain {
		t.Errorf("without a key the loss is %v, want the undropped %v", got, plain)
	}
}

// TestPlanCountsLoRA holds NewPlanFor to what NewWithLayout allocates for adapters, with
// and without dropout: trainable parameters, gradient memory and the adapters' activations.
func TestPlanCountsLoRA(t *testing.T) {
	for _, dropout := range []float64{0, 0.1} {
		m := loraModel[float32](t, 2, dropout)
		p, base := NewPlanFor(m.Cfg, m.Layout, 2), NewPlan(m.Cfg, 2)
		var acts int64
		for _, ad := range m.adapters {
			acts += int64(ad.xa.Len() + ad.mask.Len() + ad.xd.Len())
		}
		acts += int64(m.loraTmp.Len() + m.loraIdent.Len() + m.loraDx.Len() + m.loraDxd.Len())
		if p.Trainable != int64(m.Grads.Len()) || p.Memory.Grads != 4*int64(m.Grads.Len()) || p.Memory.Optimizer != 8*int64(m.Grads.Len()) {
			t.Errorf("dropout %g: plan has %d trainable, %d and %d bytes of gradients and moments; the model %d gradients",
				dropout, p.Trainable, p.Memory.Grads, p.Memory.Optimizer, m.Grads.Len())
		}
		if got := (p.Memory.Activations - base.Memory.Activations) / ActivationBytes; got != acts {
			t.Errorf("dropout %g: plan counts %d adapter activation values, the model allocates %d", dropout, got, acts)
		}
	}
}

// TestLoRAThroughLinears checks that adapters on matrices whose GEMMs a Linear runs (as
// FP8 training does) give the losses and adapter gradients of the plain model, with and
// without dropout, though the Linears' inputs are then scratch that later layers reuse.
func TestLoRAThroughLinears(t *testing.T) {
	for _, dropout := range []float64{0, 0.3} {
		plain, lin := loraModel[float64](t, 2, dropout), loraModel[float64](t, 2, dropout)
		lin.SetLinears(func(name string, first Linear[float64]) Linear[float64] {
			return &copyLinear{be: lin.be, name: name}
		})
		rng := rand.New(rand.NewPCG(2, 2))
		for _, ad := range plain.Layout.Adapters {
			for _, i := range []int{ad.A, ad.B} {
				tn := plain.Layout.Tensors[i]
				for j := range tn.Size() {
					v := 0.5 * rng.NormFloat64()
					plain.Params.Host()[tn.Offset+j], lin.Params.Host()[tn.Offset+j] = v, v
				}
			}
		}
		for i, B := range []int{2, 1} {
			b := testBatch(plain.Cfg, B, uint64(3+i))
			for _, m := range []*Model[float64]{plain, lin} {
				m.SetDropout(&DropoutKey{Seed: 4, Step: int64(i + 1)})
				m.Forward(b)
				m.Backward(0.5)
			}
		}
		for j, g := range plain.Grads.Host() {
			if d := math.Abs(g - lin.Grads.Host()[j]); d > 1e-12*math.Max(1, math.Abs(g)) {
				t.Fatalf("dropout %g: gradient %d: %v through Linears, %v without", dropout, j, lin.Grads.Host()[j], g)
			}
		}
	}
}
