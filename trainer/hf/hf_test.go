package hf

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/trainer/checkpoint"
)

// The fixtures in testdata are made by tools/hfref/make_fixture.py: a small random dense
// Llama in Hugging Face's layout (grouped-query attention, untied embeddings) and the
// logits of a PyTorch re-implementation of transformers' LlamaForCausalLM on fixed
// tokens. llama-sharded holds the same weights rounded to BF16 and F16, in two shards;
// llama31-f32 the same as a Llama 3.1 (rope_scaling llama3); llama4-f32 a Llama 4 text
// model (llama4_test.go).

type reference struct {
	Tokens []int32
	Logits [][]float64
}

func readReference(t *testing.T, dir string) reference {
	t.Helper()
	js, err := os.ReadFile(filepath.Join(dir, "logits.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(js, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// forward runs the model Load makes of dir on one sequence and returns its logits.
func forward(t *testing.T, dir string, tokens []int32) ([]float32, int) {
	t.Helper()
	m, err := Load(dir, device.CPU[float32](), 1)
	if err != nil {
		t.Fatal(err)
	}
	b := &data.Batch{}
	b.Resize(1, len(tokens))
	for i, tok := range tokens {
		b.Tokens[i], b.Targets[i], b.Pos[i], b.Mask[i] = tok, tok, int32(i), 1
	}
	m.Forward(b)
	return m.Logits().Host(), m.Cfg.VocabSize
}

// TestLogitsMatchTransformers: each fixture of tools/hfref/make_fixture.py (Llama 3 in
// float32 and in sharded BF16/F16, Llama 3.1 with rope_scaling, Llama 4 text with every
// option of docs/model.md) loaded by herd gives the PyTorch reference's logits.
func TestLogitsMatchTransformers(t *testing.T) {
	for _, name := range []string{"llama-f32", "llama-sharded", "llama31-f32", "llama4-f32"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", name)
			ref := readReference(t, dir)
			got, V := forward(t, dir, ref.Tokens)
			var worst float64
			for r, row := range ref.Logits {
				var scale float64
				for _, v := range row {
					scale = max(scale, math.Abs(v))
				}
				for c, want := range row {
					worst = max(worst, math.Abs(float64(got[r*V+c])-want)/scale)
				}
			}
			t.Logf("largest difference relative to the row's largest logit: %.2g", worst)
			if worst > 1e-4 {
				t.Fatalf("herd's logits differ from the reference by %.2g relative, want <= 1e-4", worst)
			}
		})
	}
}

// tensorsOf reads every tensor of a single-file Hugging Face folder by name, as float32
// bits, straight from the safetensors file.
func tensorsOf(t *testing.T, dir string) map[string][]uint32 {
	t.Helper()
	out := map[string][]uint32{}
	for name, e := range headerOf(t, dir) {
		raw := e.data
		for i := 0; i < len(raw); i += 4 {
			out[name] = append(out[name], uint32(raw[i])|uint32(raw[i+1])<<8|uint32(raw[i+2])<<16|uint32(raw[i+3])<<24)
		}
	}
	return out
}

type entry struct {
	shape []int
	data  []byte // F32, little-endian
}

// headerOf reads every tensor of a single-file Hugging Face folder (F32 only).
func headerOf(t *testing.T, dir string) map[string]entry {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(dir, WeightFile))
	if err != nil {
		t.Fatal(err)
	}
	n := int(uint64(src[0]) | uint64(src[1])<<8 | uint64(src[2])<<16 | uint64(src[3])<<24)
	var header map[string]json.RawMessage
	if err := json.Unmarshal(src[8:8+n], &header); err != nil {
		t.Fatal(err)
	}
	out := map[string]entry{}
	for name, js := range header {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			DType       string `json:"dtype"`
			Shape       []int  `json:"shape"`
			DataOffsets [2]int `json:"data_offsets"`
		}
		if err := json.Unmarshal(js, &e); err != nil || e.DType != "F32" {
			t.Fatalf("%s: %s, %v", name, js, err)
		}
		out[name] = entry{e.Shape, src[8+n+e.DataOffsets[0] : 8+n+e.DataOffsets[1]]}
	}
	return out
}

func TestWriteGivesBackTheSameTensors(t *testing.T) {
	for _, name := range []string{"llama-f32", "llama31-f32", "llama4-f32"} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join("testdata", name)
			cfg, tensors, err := Read(src)
			if err != nil {
				t.Fatal(err)
			}
			mult := make([]float32, len(tensors))
			for i := range mult {
				mult[i] = 1
			}
			out := t.TempDir()
			if err := Write(out, cfg, tensors, mult, float32(1/math.Sqrt(float64(cfg.HeadDim())))); err != nil {
				t.Fatal(err)
			}
			want, got := tensorsOf(t, src), tensorsOf(t, out)
			if len(got) != len(want) {
				t.Fatalf("export holds %d tensors, the source %d", len(got), len(want))
			}
			for name, w := range want {
				if g, ok := got[name]; !ok || !slicesEqual(g, w) {
					t.Errorf("%s differs from the source's (present: %v)", name, ok)
				}
			}
			back, _, err := ReadConfig(out)
			if err != nil {
				t.Fatal(err)
			}
			if back != cfg {
				t.Fatalf("config.json reads back as %+v, want %+v", back, cfg)
			}
		})
	}
}

func slicesEqual(a, b []uint32) bool {
	return len(a) == len(b) && bytes.Equal(u32bytes(a), u32bytes(b))
}

func u32bytes(s []uint32) []byte {
	b := make([]byte, 0, 4*len(s))
	for _, v := range s {
		b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	return b
}

// copyFixture copies a fixture folder so that a test can damage it.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata", name, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func editConfig(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, ConfigFile)
	js, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(js, &c); err != nil {
		t.Fatal(err)
	}
	edit(c)
	if js, err = json.Marshal(c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, js, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, fixture string
		damage        func(t *testing.T, dir string)
		want          string
	}{
		{"unknown architecture", "llama-f32", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["architectures"] = []string{"MistralForCausalLM"} })
		}, `unsupported architecture "MistralForCausalLM"`},
		{"rope scaling type", "llama-f32", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["rope_scaling"] = map[string]any{"rope_type": "yarn", "factor": 8} })
		}, `rope_scaling: rope_type "yarn"`},
		{"rope scaling key", "llama-f32", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["rope_scaling"] = map[string]any{"type": "llama3", "factor": 8} })
		}, "rope_scaling.low_freq_factor: missing"},
		{"moe", "llama-f32", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["num_local_experts"] = 8 })
		}, "num_local_experts"},
		{"missing shard", "llama-sharded", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors"))
		}, "model-00002-of-00002.safetensors: missing shard"},
		{"wrong shape", "llama-f32", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["intermediate_size"] = 40 })
		}, "tensor model.layers.0.mlp.down_proj.weight has shape [32 48], want [32 40]"},
		{"missing tensor", "llama-f32", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["num_hidden_layers"] = 3 })
		}, "tensor model.layers.2."},
		{"extra tensor", "llama-f32", func(t *testing.T, dir string) {
			editConfig(t, dir, func(c map[string]any) { c["num_hidden_layers"] = 1 })
		}, "unexpected tensor model.layers.1."},
		{"no weights", "llama-f32", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, WeightFile))
		}, "model.safetensors: no weights"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyFixture(t, tc.fixture)
			tc.damage(t, dir)
			_, _, err := Read(dir)
			if err == nil || !usererr.Is(err) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Read: %v; want one-line user error containing %q", err, tc.want)
			}
		})
	}
}

// TestRopeParameters: transformers 5 writes rope_theta and rope_scaling as one
// rope_parameters object, read as the two.
func TestRopeParameters(t *testing.T) {
	want, _, err := ReadConfig(filepath.Join("testdata", "llama31-f32"))
	if err != nil {
		t.Fatal(err)
	}
	dir := copyFixture(t, "llama31-f32")
	editConfig(t, dir, func(c map[string]any) {
		params := c["rope_scaling"].(map[string]any)
		params["rope_theta"] = c["rope_theta"]
		c["rope_parameters"] = params
		delete(c, "rope_scaling")
		delete(c, "rope_theta")
	})
	got, _, err := ReadConfig(dir)
	if err != nil || got != want {
		t.Fatalf("ReadConfig = %+v, %v; want %+v", got, err, want)
	}
	editConfig(t, dir, func(c map[string]any) { c["rope_parameters"].(map[string]any)["rope_type"] = "yarn" })
	if _, _, err := ReadConfig(dir); err == nil || !strings.Contains(err.Error(), `rope_parameters: rope_type "yarn"`) {
		t.Fatalf("ReadConfig: %v; want an error naming rope_parameters", err)
	}
}

// TestTiedEmbeddings: a model with tie_word_embeddings has no lm_head.weight; herd's
// untied output.weight starts as a copy of the embedding.
func TestTiedEmbeddings(t *testing.T) {
	cfg, tensors, err := Read(filepath.Join("testdata", "llama-f32"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mult := make([]float32, len(tensors))
	for i := range mult {
		mult[i] = 1
	}
	if err := Write(dir, cfg, tensors, mult, float32(1/math.Sqrt(float64(cfg.HeadDim())))); err != nil {
		t.Fatal(err)
	}
	dropTensor(t, dir, "lm_head.weight")
	editConfig(t, dir, func(c map[string]any) { c["tie_word_embeddings"] = true })
	_, tied, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	emb, out := tied[0], tied[len(tied)-1]
	if emb.Name != "tok_embeddings.weight" || out.Name != "output.weight" || !slices.Equal(out.Data, emb.Data) {
		t.Fatalf("%s is not a copy of %s", out.Name, emb.Name)
	}
	if !slices.Equal(tied[1].Data, tensors[1].Data) || !slices.Equal(tied[2].Data, tensors[2].Data) {
		t.Fatal("the other tensors changed")
	}
}

// dropTensor rewrites the safetensors file of a folder without one of its tensors.
func dropTensor(t *testing.T, dir, name string) {
	t.Helper()
	var keep []checkpoint.Tensor
	for n, e := range headerOf(t, dir) {
		if n != name {
			keep = append(keep, checkpoint.Tensor{Name: n, Shape: e.shape, Data: floats(e.data)})
		}
	}
	writeSafetensors(t, filepath.Join(dir, WeightFile), keep)
}

func floats(raw []byte) []float32 {
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
	}
	return out
}

func writeSafetensors(t *testing.T, path string, tensors []checkpoint.Tensor) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := checkpoint.WriteSafetensors(f, nil, tensors); err != nil {
		t.Fatal(err)
	}
}
