package model

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/herdml/herd/kernels/device"
)

// TestPlanLlama4 checks the Llama 4 presets against Meta's published sizes: Scout 109B
// total, Maverick 400B total, both 17B active. Published totals include the vision
// encoder, which herd replaces by a patch projection, hence the tolerances.
func TestPlanLlama4(t *testing.T) {
	for _, c := range []struct {
		preset        string
		total, active float64
		tol           float64 // relative
	}{
		{"scout", 109e9, 17e9, 0.02},
		{"maverick", 400e9, 17e9, 0.02},
	} {
		p := NewPlan(Presets[c.preset], 1)
		if rel := math.Abs(float64(p.Params)/c.total - 1); rel > c.tol {
			t.Errorf("%s: %d parameters, published %.0fB (off by %.1f%%)", c.preset, p.Params, c.total/1e9, 100*rel)
		}
		if rel := math.Abs(float64(p.ActiveParams)/c.active - 1); rel > c.tol {
			t.Errorf("%s: %d active parameters, published %.0fB (off by %.1f%%)", c.preset, p.ActiveParams, c.active/1e9, 100*rel)
		}
		// Adam keeps two moments per weight; activations come on top.
		if p.Memory.Optimizer != 2*p.Memory.Weights || p.Memory.Total <= p.Memory.Weights+p.Memory.Grads+p.Memory.Optimizer {
			t.Errorf("%s: memory %+v", c.preset, p.Memory)
		}
	}
	s, m := NewPlan(Presets["scout"], 1), NewPlan(Presets["maverick"], 1)
	if math.Abs(s.FLOPsPerToken/m.FLOPsPerToken-1) > 0.01 {
		t.Errorf("scout %.3g and maverick %.3g FLOPs per token differ; both are 17B active", s.FLOPsPerToken, m.FLOPsPerToken)
	}
}

// TestPlanCountsWhatATokenTouches derives the active parameters a second way: from the
// layout, counting each routed-expert tensor at k/E of its size.
func TestPlanCountsWhatATokenTouches(t *testing.T) {
	for _, name := range PresetNames() {
		cfg := Presets[name]
		var active float64
		for _, x := range NewLayout(cfg).Tensors {
			if strings.Contains(x.Name, ".moe.experts.") {
				active += float64(x.Size()) * float64(cfg.MoE.TopK) / float64(cfg.MoE.Experts)
			} else {
				active += float64(x.Size())
			}
		}
		if p := NewPlan(cfg, 1); float64(p.ActiveParams) != active {
			t.Errorf("%s: plan says %d active, layout says %.0f", name, p.ActiveParams, active)
		}
	}
}

// TestPlanDense works a dense model's figures out by hand.
func TestPlanDense(t *testing.T) {
	// V 10, C 8, L 2, H 2, KV 1, D 4, F 12, T 5, no experts, no vision.
	cfg := Config{VocabSize: 10, DModel: 8, NLayers: 2, NHeads: 2, NKVHeads: 1, FFNHidden: 12, SeqLen: 5, RopeTheta: 1e4, NormEps: 1e-5}
	p := NewPlan(cfg, 3)
	// per layer: wq 8·8 + wk 4·8 + wv 4·8 + wo 8·8 = 192, FFN 3·12·8 = 288, gains 2·8
	layer := int64(192 + 288 + 16)
	want := 10*8 + 2*layer + 8 + 10*8 // embedding, layers, final norm, head
	if p.Params != want || p.ActiveParams != want {
		t.Fatalf("params %d, active %d, want %d", p.Params, p.ActiveParams, want)
	}
	matmul := 2*(192+288) + 10*8 // what multiplies each token: q/k/v/o, FFN, head
	if p.MatmulFLOPs != 6*float64(matmul) {
		t.Errorf("matmul FLOPs %g, want %d", p.MatmulFLOPs, 6*matmul)
	}
	// each layer: 2 heads × 4 dims × 2 matmuls × 2 FLOPs × 3 (keys 1..5 average 3) × 3 (fwd+bwd)
	if p.AttentionFLOPs != 2*(2*4*2*2*3)*3 {
		t.Errorf("attention FLOPs %g, want %d", p.AttentionFLOPs, 2*(2*4*2*2*3)*3)
	}
	// per token per layer: h1 8, rstd 1, q 8, k 4, v 4, att 8, lse 2, xmid 8, h2 8, rstd 1, SwiGLU 4·12
	perLayer := int64(8 + 1 + 8 + 4 + 4 + 8 + 2 + 8 + 8 + 1 + 48)
	// batch 5, streams 3·8, layers, final norm 8 + 1, logits 10, loss rows 2, and the
	// gradient scratch: dx, dh, tmp, dy 4·8, dq, datt 2·8, dk, dv 2·4, 3·12, dlogits 10, w 1
	perToken := 5 + 3*8 + 2*perLayer + 8 + 1 + 10 + 2 + (32 + 16 + 8 + 36 + 10 + 1)
	if want := 4 * 3 * 5 * perToken; p.Memory.Activations != want {
		t.Errorf("activations %d bytes, want %d", p.Memory.Activations, want)
	}
}

// TestPlanActivationsMatchNew holds the plan to what New allocates: the buffers that grow
// with the micro-batch, measured as the difference between a model for 2 sequences and one
// for 1, on shapes with every kind of layer.
func TestPlanActivationsMatchNew(t *testing.T) {
	vision := Presets["tiny"]
	vision.Vision = Vision{Patch: 2, Channels: 3}
	vision.MoE.TopK = 2
	dense := Presets["tiny"]
	dense.MoE = MoE{}
	llama4 := Presets["tiny"]
	llama4.QKNorm, llama4.AttentionChunk, llama4.MoE.ScoreOnInput = true, 8, true
	llama4.AttnTemperature = AttnTemperature{FloorScale: 4, Scale: 0.1}
	for name, cfg := range map[string]Config{"tiny": Presets["tiny"], "dense": dense, "vision top-2": vision, "llama4 options": llama4} {
		cfg.SeqLen = 16
		one := elements(reflect.ValueOf(New[float32](cfg, device.CPU[float32](), 1)).Elem(), map[uintptr]bool{})
		two := elements(reflect.ValueOf(New[float32](cfg, device.CPU[float32](), 2)).Elem(), map[uintptr]bool{})
		if got, want := int64(two-one)*4, NewPlan(cfg, 1).Memory.Activations; got != want {
			t.Errorf("%s: New allocates %d bytes per sequence, the plan counts %d", name, got, want)
		}
	}
}

// elements counts the capacity of every slice reachable from v without following pointers,
// maps or interfaces, each array once: the model's own buffers (the host staging of the
// batch upload is, on the CPU, the batch buffers' own memory).
func elements(v reflect.Value, seen map[uintptr]bool) int {
	switch v.Kind() {
	case reflect.Struct:
		n := 0
		for i := range v.NumField() {
			n += elements(v.Field(i), seen)
		}
		return n
	case reflect.Slice:
		switch v.Type().Elem().Kind() {
		case reflect.Slice, reflect.Struct:
			n := 0
			for i := range v.Len() {
				n += elements(v.Index(i), seen)
			}
			return n
		}
		if v.Cap() == 0 || seen[v.Pointer()] {
			return 0
		}
		seen[v.Pointer()] = true
		return v.Cap()
	}
	return 0
}
