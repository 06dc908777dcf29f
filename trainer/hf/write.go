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

// Write saves a dense herd model into dir (created if needed) as a Hugging Face
// LlamaForCausalLM: config.json and model.safetensors (F32), with q and k rows put back in
// rotate_half order. tensors are the model's, by herd name, in model.NewLayout order;
// mult[i] is tensors[i]'s forward multiplier and attnScale the attention logit scale.
// transformers has neither, so a multiplier other than 1 is folded into its tensor's
// weights, and an attention scale other than 1/sqrt(head_dim) into the queries; where
// they are 1 and 1/sqrt(head_dim) (a model read by Read, metap.mode sp) the weights are
// written bit for bit. A model Llama cannot express (experts, vision, layers without RoPE)
// is a user error naming the key.
func Write(dir string, cfg model.Config, tensors []checkpoint.Tensor, mult []float32, attnScale float32) error {
	switch {
	case cfg.MoE.Experts > 0:
		return usererr.New("model.moe.experts", "is %d: --format hf writes dense Llama models only; export mixture-of-experts models in herd's format", cfg.MoE.Experts)
	case cfg.PatchPixels() > 0:
		return usererr.New("model.vision.patch", "is %d: --format hf writes text-only Llama models", cfg.Vision.Patch)
	case cfg.NoPEEvery > 0:
		return usererr.New("model.nope_every", "is %d: Llama applies RoPE on every layer; --format hf needs nope_every 0", cfg.NoPEEvery)
	}
	hfName, rope := names(cfg)
	D := cfg.HeadDim()
	qScale := attnScale * float32(math.Sqrt(float64(D)))
	if attnScale == float32(1/math.Sqrt(float64(D))) {
		qScale = 1
	}
	out := make([]checkpoint.Tensor, 0, len(tensors))
	for i, t := range tensors {
		name, ok := hfName[t.Name]
		if !ok {
			return fmt.Errorf("hf: tensor %s has no Hugging Face name", t.Name)
		}
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
		if rope[t.Name] {
			perm := make([]float32, len(data))
			permute(data, perm, D, cfg.DModel, true)
			data = perm
		}
		out = append(out, checkpoint.Tensor{Name: name, Shape: t.Shape, Data: data})
	}
	eps, theta := cfg.NormEps, cfg.RopeTheta
	c := Config{
		Architectures: []string{Architecture}, ModelType: "llama",
		HiddenSize: cfg.DModel, NumHiddenLayers: cfg.NLayers, NumAttentionHeads: cfg.NHeads,
		NumKeyValueHeads: cfg.NKVHeads, IntermediateSize: cfg.FFNHidden, VocabSize: cfg.VocabSize,
		RMSNormEps: &eps, RopeTheta: &theta, MaxPositions: cfg.SeqLen, HiddenAct: "silu", TorchDType: "float32",
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
