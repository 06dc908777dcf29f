package hf

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/model"
)

// testdata/llama4-f32 is a Llama4ForCausalLM (tools/hfref/make_fixture.py): 4 layers,
// MoE on layers 1 and 3 (4 experts, top-1, shared expert), dense layers 0 and 2 with
// intermediate_size_mlp 24, no RoPE on layer 3, qk norm, temperature tuning with
// floor_scale 4, chunks of 4 positions, rope_scaling llama3.

// TestLlama4Config: the config maps to every herd option it names.
func TestLlama4Config(t *testing.T) {
	cfg, tied, err := ReadConfig(filepath.Join("testdata", "llama4-f32"))
	if err != nil {
		t.Fatal(err)
	}
	want := model.Config{
		VocabSize: 64, DModel: 16, NLayers: 4, NHeads: 2, NKVHeads: 1, FFNHidden: 24, SeqLen: 64,
		RopeTheta: 10000, NoPEEvery: 4, NormEps: 1e-5,
		MoE:             model.MoE{Experts: 4, TopK: 1, SharedExpert: true, Every: 2, ExpertHidden: 8, AuxLoss: 0.001, ScoreOnInput: true},
		QKNorm:          true,
		AttnTemperature: model.AttnTemperature{FloorScale: 4, Scale: 0.5},
		AttentionChunk:  4,
		RopeScaling:     model.RopeScaling{Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 16},
	}
	if cfg != want || tied {
		t.Fatalf("ReadConfig = %+v (tied %v)\nwant %+v", cfg, tied, want)
	}
}

// chatFolder writes src's Llama 4 as the text model of a Llama4ForConditionalGeneration,
// as Meta publishes Llama 4: its config under text_config, its tensors under
// language_model., beside a vision tower and projector, in two shards (the vision tensors
// in both).
func chatFolder(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	js, err := os.ReadFile(filepath.Join(src, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(map[string]any{
		"architectures": []string{Llama4Chat}, "model_type": "llama4",
		"text_config": json.RawMessage(js), "vision_config": map[string]any{"hidden_size": 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), c, 0o644); err != nil {
		t.Fatal(err)
	}
	shard := [2][]checkpoint.Tensor{
		{{Name: "vision_model.patch_embedding.linear.weight", Shape: []int{4, 3}, Data: make([]float32, 12)}},
		{{Name: "multi_modal_projector.linear_1.weight", Shape: []int{16, 4}, Data: make([]float32, 64)}},
	}
	i := 0
	for name, e := range headerOf(t, src) {
		shard[i%2] = append(shard[i%2], checkpoint.Tensor{Name: "language_model." + name, Shape: e.shape, Data: floats(e.data)})
		i++
	}
	weightMap := map[string]string{}
	for n, ts := range shard {
		file := []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[n]
		writeSafetensors(t, filepath.Join(dir, file), ts)
		for _, t := range ts {
			weightMap[t.Name] = file
		}
	}
	idx, err := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, IndexFile), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLlama4ConditionalGeneration: the text model of a Llama4ForConditionalGeneration
// reads as the same Llama4ForCausalLM, its vision tensors skipped.
func TestLlama4ConditionalGeneration(t *testing.T) {
	src := filepath.Join("testdata", "llama4-f32")
	wantCfg, want, err := Read(src)
	if err != nil {
		t.Fatal(err)
	}
	cfg, got, err := Read(chatFolder(t, src))
	if err != nil {
		t.Fatal(err)
	}
	if cfg != wantCfg {
		t.Fatalf("config %+v, want %+v", cfg, wantCfg)
	}
	for i, w := range want {
		if got[i].Name != w.Name || !slicesEqual(bitsOf(got[i].Data), bitsOf(w.Data)) {
			t.Fatalf("tensor %d (%s) differs from the Llama4ForCausalLM's %s", i, got[i].Name, w.Name)
		}
	}
}

func bitsOf(f []float32) []uint32 {
	out := make([]uint32, len(f))
	for i, v := range f {
		out[i] = math.Float32bits(v)
	}
	return out
}

// TestLlama4Refuses: what herd cannot compute as transformers does, and damaged folders,
// are one-line user errors naming the key, the tensor or the file.
func TestLlama4Refuses(t *testing.T) {
	edit := func(key string, v any) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { editConfig(t, dir, func(c map[string]any) { c[key] = v }) }
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"moe layers", edit("moe_layers", []int{1, 2}), "moe_layers: [1 2]; herd's MoE layers are every k-th"},
		{"no moe layer", edit("moe_layers", []int{}), "moe_layers: [] (no MoE layer)"},
		{"no rope layers", edit("no_rope_layers", []int{1, 0, 1, 1}), "no_rope_layers: [1 0 1 1]"},
		{"layer types", edit("layer_types", []string{"full_attention", "chunked_attention", "full_attention", "full_attention"}), "layer_types: "},
		{"head dim", edit("head_dim", 4), "head_dim: 4 is not hidden_size/num_attention_heads"},
		{"rope scaling", edit("rope_scaling", map[string]any{"rope_type": "dynamic", "factor": 2}), `rope_scaling: rope_type "dynamic"`},
		{"bias", edit("attention_bias", true), "attention_bias: true"},
		{"wrong shape", edit("intermediate_size", 6), "tensor model.layers.1.feed_forward.experts.down_proj has shape [4 8 16], want [4 6 16]"},
		{"missing tensor", edit("num_hidden_layers", 5), "tensor model.layers.4."},
		{"extra tensor", func(t *testing.T, dir string) {
			tensors := []checkpoint.Tensor{}
			for n, e := range headerOf(t, dir) {
				tensors = append(tensors, checkpoint.Tensor{Name: n, Shape: e.shape, Data: floats(e.data)})
			}
			tensors = append(tensors, checkpoint.Tensor{Name: "vision_model.x", Shape: []int{1}, Data: []float32{0}})
			writeSafetensors(t, filepath.Join(dir, WeightFile), tensors) // skipped only inside a Llama4ForConditionalGeneration
		}, "unexpected tensor vision_model.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyFixture(t, "llama4-f32")
			tc.damage(t, dir)
			wantUserError(t, dir, tc.want)
		})
	}
	t.Run("missing shard", func(t *testing.T) {
		dir := chatFolder(t, filepath.Join("testdata", "llama4-f32"))
		os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors"))
		wantUserError(t, dir, "model-00002-of-00002.safetensors: missing shard")
	})
	t.Run("extra text tensor", func(t *testing.T) {
		dir := chatFolder(t, filepath.Join("testdata", "llama4-f32"))
		js, _ := os.ReadFile(filepath.Join(dir, IndexFile))
		os.WriteFile(filepath.Join(dir, IndexFile), []byte(strings.Replace(string(js), `"weight_map":{`, `"weight_map":{"language_model.model.extra.weight":"model-00001-of-00002.safetensors",`, 1)), 0o644)
		wantUserError(t, dir, "unexpected tensor language_model.model.extra.weight")
	})
	t.Run("text_config", func(t *testing.T) {
		dir := chatFolder(t, filepath.Join("testdata", "llama4-f32"))
		editConfig(t, dir, func(c map[string]any) {
			c["text_config"].(map[string]any)["moe_layers"] = []int{1, 2}
		})
		wantUserError(t, dir, "text_config.moe_layers: [1 2]")
	})
}

func wantUserError(t *testing.T, dir, want string) {
	t.Helper()
	_, _, err := Read(dir)
	if err == nil || !usererr.Is(err) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Read: %v; want one-line user error containing %q", err, want)
	}
}

// TestWriteRefuses: herd models neither Llama nor Llama 4 can express are user errors
// naming the model key.
func TestWriteRefuses(t *testing.T) {
	llama4, tensors, err := Read(filepath.Join("testdata", "llama4-f32"))
	if err != nil {
		t.Fatal(err)
	}
	dense, _, err := ReadConfig(filepath.Join("testdata", "llama-f32"))
	if err != nil {
		t.Fatal(err)
	}
	mult := make([]float32, len(tensors))
	for i := range mult {
		mult[i] = 1
	}
	for _, tc := range []struct {
		name  string
		cfg   model.Config
		scale float32
		want  string
	}{
		{"shared expert", func() model.Config { c := llama4; c.MoE.SharedExpert = false; return c }(), 0, "model.moe.shared_expert"},
		{"score on output", func() model.Config { c := llama4; c.MoE.ScoreOnInput = false; return c }(), 0, "model.moe.score_on_input"},
		{"qk norm and scale", llama4, 0.5, "model.qk_norm"},
		{"dense nope", func() model.Config { c := dense; c.NoPEEvery = 2; return c }(), 0, "model.nope_every"},
		{"dense qk norm", func() model.Config { c := dense; c.QKNorm = true; return c }(), 0, "model.qk_norm"},
		{"dense chunk", func() model.Config { c := dense; c.AttentionChunk = 4; return c }(), 0, "model.attention_chunk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scale := tc.scale
			if scale == 0 {
				scale = float32(1 / math.Sqrt(float64(tc.cfg.HeadDim())))
			}
			dir := filepath.Join(t.TempDir(), "out")
			err := Write(dir, tc.cfg, tensors, mult, scale)
			if err == nil || !usererr.Is(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write: %v; want a user error naming %s", err, tc.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Fatal("Write refused but wrote the folder")
			}
		})
	}
}
