package hf

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/model"
)

// Write saves a herd model into dir (created if needed) in Hugging Face's layout:
// config.json and model.safetensors (F32). A mixture-of-experts model is written as a
// Llama4ForCausalLM, any other as a LlamaForCausalLM (q and k rows put back in
// rotate_half order). tensors are the model's, by herd name, in model.NewLayout order;
// mult[i] is tensors[i]'s forward multiplier and attnScale the attention logit scale.
// transformers has neither, so a multiplier other than 1 is folded into its tensor's
// weights, and an attention scale other than 1/sqrt(head_dim) into the queries; where
// they are 1 and 1/sqrt(head_dim) (a model read by Read, metap.mode sp) the weights are
// written bit for bit. A model neither can express is a user error naming the key.
func Write(dir string, cfg model.Config, tensors []checkpoint.Tensor, mult []float32, attnScale float32) error {
	D := cfg.HeadDim()
	qScale := attnScale * float32(math.Sqrt(float64(D)))
	if attnScale == float32(1/math.Sqrt(float64(D))) {
		qScale = 1
	}
	if err := expressible(cfg, qScale); err != nil {
		return err
	}
	byHerd := map[string][]float32{}
	for i, t := range tensors {
		data := t.Data
		scale := mult[i]
		if strings.HasSuffix(t.Name, ".wq") {
			scale *= qScale
		}
		if scale != 1 {
			data = make([]float32, len(t.Data))
			for j, v := range t.Data {
				data[j] = v * scale
			}
		}
		byHerd[t.Name] = data
	}
	s := source{cfg: cfg, llama4: cfg.MoE.Experts > 0}
	maps := mappings(s)
	out := make([]checkpoint.Tensor, 0, len(maps))
	for _, m := range maps {
		herd := make([][]float32, len(m.herd))
		for i, n := range m.herd {
			if herd[i] = byHerd[n]; herd[i] == nil {
				return fmt.Errorf("hf: the model has no tensor %s", n)
			}
			delete(byHerd, n)
		}
		data := make([]float32, size(m.shape))
		m.convert(cfg, herd, data, true)
		out = append(out, checkpoint.Tensor{Name: m.hf, Shape: m.shape, Data: data})
	}
	for n := range byHerd {
		return fmt.Errorf("hf: tensor %s has no Hugging Face name", n)
	}
	c := llamaConfig(cfg)
	if s.llama4 {
		c = llama4Config(cfg)
	}
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("hf: encoding %s: %w", ConfigFile, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, WeightFile))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := checkpoint.WriteSafetensors(f, map[string]string{"format": "pt"}, out); err != nil {
		f.Close()
		return fmt.Errorf("export: writing %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// expressible refuses what neither LlamaForCausalLM nor Llama4ForCausalLM computes, naming
// the model key: vision; for Llama 4 (MoE) routed experts without a shared one or scaled
// at their output, and an attention scale that cannot be folded into q because qk_norm
// normalises q after it; for Llama (dense) Llama 4's attention options.
func expressible(cfg model.Config, qScale float32) error {
	if cfg.PatchPixels() > 0 {
		return usererr.New("model.vision.patch", "is %d: --format hf writes text-only models", cfg.Vision.Patch)
	}
	if cfg.MoE.Experts > 0 {
		switch {
		case !cfg.MoE.SharedExpert:
			return usererr.New("model.moe.shared_expert", "is false: Llama 4's MoE layers have a shared expert; export this model in herd's format")
		case !cfg.MoE.ScoreOnInput:
			return usererr.New("model.moe.score_on_input", "is false: Llama 4 scales a routed expert's input by its gate, not its output; export this model in herd's format")
		case cfg.QKNorm && qScale != 1:
			return usererr.New("model.qk_norm", "is on and the attention scale is not 1/sqrt(head_dim): transformers' Llama 4 normalises q after the projection, so the scale cannot be folded into q_proj; export a model trained with metap.mode sp")
		}
		return nil
	}
	dense := "is %v: --format hf writes a dense model as LlamaForCausalLM, which has no %s (Llama 4's, written for mixture-of-experts models only)"
	switch {
	case cfg.NoPEEvery > 0:
		return usererr.New("model.nope_every", dense, cfg.NoPEEvery, "layers without RoPE")
	case cfg.QKNorm:
		return usererr.New("model.qk_norm", dense, cfg.QKNorm, "qk norm")
	case cfg.AttnTemperature.FloorScale > 0:
		return usererr.New("model.attn_temperature.floor_scale", dense, cfg.AttnTemperature.FloorScale, "attention temperature tuning")
	case cfg.AttentionChunk > 0:
		return usererr.New("model.attention_chunk", dense, cfg.AttentionChunk, "chunked attention")
	}
	return nil
}

// llamaConfig is the LlamaForCausalLM config.json of a dense cfg.
func llamaConfig(cfg model.Config) Config {
	ip := func(v int) *int { return &v }
	fp := func(v float64) *float64 { return &v }
	c := Config{
		Architectures: []string{Llama}, ModelType: "llama",
		HiddenSize: ip(cfg.DModel), NumHiddenLayers: ip(cfg.NLayers), NumAttentionHeads: ip(cfg.NHeads),
		NumKeyValueHeads: ip(cfg.NKVHeads), IntermediateSize: ip(cfg.FFNHidden), VocabSize: ip(cfg.VocabSize),
		RMSNormEps: fp(cfg.NormEps), RopeTheta: fp(cfg.RopeTheta), MaxPositions: ip(cfg.SeqLen), HiddenAct: "silu", TorchDType: "float32",
	}
	if r := cfg.RopeScaling; r.Factor > 0 {
		c.RopeScaling = &RopeScaling{RopeType: "llama3", Factor: fp(r.Factor), LowFreqFactor: fp(r.LowFreqFactor),
			HighFreqFactor: fp(r.HighFreqFactor), OriginalMaxPositions: ip(r.OriginalMaxPositions)}
	}
	return c
}
