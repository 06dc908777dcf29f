package hf

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/model"
)

// llama4Defaults are Llama4TextConfig's defaults (Llama 4 Scout's shape) for the keys a
// config.json leaves out.
var llama4Defaults = struct {
	model              model.Config
	headDim, chunk     int
	interleave, noRope int
	floor, scale       float64
}{
	model: model.Config{
		VocabSize: 202048, DModel: 5120, NLayers: 48, NHeads: 40, NKVHeads: 8, FFNHidden: 16384,
		SeqLen: 4096 * 32, RopeTheta: 500000, NormEps: 1e-5, QKNorm: true,
		MoE: model.MoE{Experts: 16, TopK: 1, SharedExpert: true, ExpertHidden: 8192, AuxLoss: 0.001, ScoreOnInput: true},
	},
	headDim: 128, chunk: 8192, interleave: 1, noRope: 4, floor: 8192, scale: 0.1,
}

// llama4 maps a Llama4TextConfig (key is "text_config." inside a
// Llama4ForConditionalGeneration): intermediate_size is the experts' (and the shared
// expert's) hidden width, intermediate_size_mlp the dense layers'; every MoE layer has a
// shared expert and scales the routed experts' input by the sigmoid gate. MoE layers,
// NoPE layers and chunked-attention layers must follow herd's every-k patterns.
func (c Config) llama4(where, key string) (model.Config, error) {
	d := llama4Defaults
	m, err := c.common(where, key, d.model)
	if err != nil {
		return m, err
	}
	if c.HeadDim == nil && d.headDim*m.NHeads != m.DModel {
		return m, refuse(where, key+"head_dim", "missing, so %d (Llama4TextConfig's default), which is not hidden_size/num_attention_heads (%d/%d)",
			d.headDim, m.DModel, m.NHeads)
	}
	pos := func(k string, v *int, dst *int) error {
		if v != nil {
			*dst = *v
		}
		if *dst <= 0 {
			return usererr.New(where, "%s%s: must be a positive integer, got %d", key, k, *dst)
		}
		return nil
	}
	for _, e := range []error{
		pos("intermediate_size", c.IntermediateSize, &m.MoE.ExpertHidden),
		pos("intermediate_size_mlp", c.IntermediateSizeMLP, &m.FFNHidden),
		pos("num_local_experts", c.NumLocalExperts, &m.MoE.Experts),
		pos("num_experts_per_tok", c.NumExpertsPerTok, &m.MoE.TopK),
	} {
		if e != nil {
			return m, e
		}
	}
	if c.RouterAuxLossCoef != nil {
		m.MoE.AuxLoss = *c.RouterAuxLossCoef
	}
	if c.UseQKNorm != nil {
		m.QKNorm = *c.UseQKNorm
	}

	// MoE layers: moe_layers, else every interleave_moe_layer_step-th layer.
	step := d.interleave
	if err := pos("interleave_moe_layer_step", c.InterleaveMoELayerStep, &step); err != nil {
		return m, err
	}
	if c.MoELayers != nil {
		if len(c.MoELayers) == 0 {
			return m, refuse(where, key+"moe_layers", "[] (no MoE layer); herd reads Llama 4 models with mixture-of-experts layers")
		}
		step = c.MoELayers[0] + 1
		if !slices.Equal(c.MoELayers, every(step, m.NLayers, true)) {
			return m, refuse(where, key+"moe_layers", "%v; herd's MoE layers are every k-th (layers k-1, 2k-1, ...)", c.MoELayers)
		}
	} else if step > m.NLayers {
		return m, refuse(where, key+"interleave_moe_layer_step", "%d leaves no MoE layer among %d; herd reads Llama 4 models with mixture-of-experts layers", step, m.NLayers)
	}
	m.MoE.Every = step

	// NoPE layers: no_rope_layers (1 = RoPE), else every no_rope_layer_interval-th layer.
	interval := d.noRope
	if err := pos("no_rope_layer_interval", c.NoRopeLayerInterval, &interval); err != nil {
		return m, err
	}
	if len(c.NoRopeLayers) > 0 { // transformers takes an empty list as unset
		interval = 0
		if i := slices.Index(c.NoRopeLayers, 0); i >= 0 {
			interval = i + 1
		}
		if !slices.Equal(c.NoRopeLayers, ropeFlags(interval, m.NLayers)) {
			return m, refuse(where, key+"no_rope_layers", "%v; herd's NoPE layers are every k-th (layers k-1, 2k-1, ... are 0, the others 1)", c.NoRopeLayers)
		}
	}
	m.NoPEEvery = interval

	// Attention temperature tuning (on the NoPE layers).
	tuning, floor, scale := true, d.floor, d.scale
	if c.AttnTemperatureTuning != nil {
		tuning = *c.AttnTemperatureTuning
	}
	if c.FloorScale != nil {
		floor = *c.FloorScale
	}
	if c.AttnScale != nil {
		scale = *c.AttnScale
	}
	if tuning {
		if !(floor > 0) {
			return m, refuse(where, key+"floor_scale", "%g; attn_temperature_tuning divides positions by it, so it must be positive", floor)
		}
		m.AttnTemperature = model.AttnTemperature{FloorScale: floor, Scale: scale}
	}

	// Chunked attention on the RoPE layers: layer_types, if given, must be
	// transformers' default (chunked_attention exactly on the RoPE layers) or full
	// attention everywhere.
	chunk := d.chunk
	if len(c.AttentionChunkSize) > 0 {
		var v *int
		if err := json.Unmarshal(c.AttentionChunkSize, &v); err != nil || (v != nil && *v <= 0) {
			return m, usererr.New(where, "%sattention_chunk_size: must be a positive integer or null, got %s", key, c.AttentionChunkSize)
		}
		chunk = 0
		if v != nil {
			chunk = *v
		}
	}
	if c.LayerTypes != nil {
		switch {
		case slices.Equal(c.LayerTypes, layerTypes(interval, m.NLayers, 0)):
			chunk = 0
		case chunk > 0 && slices.Equal(c.LayerTypes, layerTypes(interval, m.NLayers, chunk)):
		default:
			return m, refuse(where, key+"layer_types", "%v; herd's chunked attention is on every RoPE layer (with attention_chunk_size set) or none", c.LayerTypes)
		}
	}
	m.AttentionChunk = chunk
	return m, nil
}

// every lists the layers i < n with (i+1) % k == 0 (want true) or the others.
func every(k, n int, want bool) []int {
	out := []int{}
	for i := range n {
		if ((i+1)%k == 0) == want {
			out = append(out, i)
		}
	}
	return out
}

// ropeFlags is no_rope_layers for herd's nope_every k: 1 where a layer uses RoPE.
func ropeFlags(k, n int) []int {
	out := make([]int, n)
	for i := range out {
		if k == 0 || (i+1)%k != 0 {
			out[i] = 1
		}
	}
	return out
}

// layerTypes is layer_types for nope_every k and attention_chunk: chunked attention on
// the RoPE layers when chunk > 0.
func layerTypes(k, n, chunk int) []string {
	out := make([]string, n)
	for i, rope := range ropeFlags(k, n) {
		out[i] = "full_attention"
		if rope == 1 && chunk > 0 {
			out[i] = "chunked_attention"
		}
	}
	return out
}

// llama4Config is the Llama4ForCausalLM config.json of cfg, which Write has checked that
// Llama 4 can express: every key ReadConfig reads, explicitly.
func llama4Config(cfg model.Config) Config {
	ip := func(v int) *int { return &v }
	fp := func(v float64) *float64 { return &v }
	bp := func(v bool) *bool { return &v }
	t := cfg.AttnTemperature
	chunk := json.RawMessage("null")
	if cfg.AttentionChunk > 0 {
		chunk = json.RawMessage(fmt.Sprint(cfg.AttentionChunk))
	}
	interval := cfg.NoPEEvery
	if interval == 0 {
		interval = cfg.NLayers + 1 // no_rope_layers says it; this keeps transformers' default from disagreeing
	}
	c := Config{
		Architectures: []string{Llama4}, ModelType: "llama4_text",
		HiddenSize: ip(cfg.DModel), NumHiddenLayers: ip(cfg.NLayers), NumAttentionHeads: ip(cfg.NHeads),
		NumKeyValueHeads: ip(cfg.NKVHeads), HeadDim: ip(cfg.HeadDim()), IntermediateSize: ip(cfg.MoE.ExpertHidden),
		IntermediateSizeMLP: ip(cfg.FFNHidden), VocabSize: ip(cfg.VocabSize), RMSNormEps: fp(cfg.NormEps),
		RopeTheta: fp(cfg.RopeTheta), MaxPositions: ip(cfg.SeqLen), HiddenAct: "silu", TorchDType: "float32",
		NumLocalExperts: ip(cfg.MoE.Experts), NumExpertsPerTok: ip(cfg.MoE.TopK),
		InterleaveMoELayerStep: ip(cfg.MoE.Every), MoELayers: every(cfg.MoE.Every, cfg.NLayers, true),
		RouterAuxLossCoef: fp(cfg.MoE.AuxLoss),
		NoRopeLayers:      ropeFlags(cfg.NoPEEvery, cfg.NLayers), NoRopeLayerInterval: ip(interval),
		UseQKNorm: bp(cfg.QKNorm), AttnTemperatureTuning: bp(t.FloorScale > 0), FloorScale: fp(t.FloorScale), AttnScale: fp(t.Scale),
		AttentionChunkSize: chunk, LayerTypes: layerTypes(cfg.NoPEEvery, cfg.NLayers, cfg.AttentionChunk),
		RopeScaling: llamaConfig(cfg).RopeScaling,
	}
	if t.FloorScale == 0 { // transformers' defaults, unused with the tuning off
		c.FloorScale, c.AttnScale = fp(llama4Defaults.floor), fp(llama4Defaults.scale)
	}
	return c
}
