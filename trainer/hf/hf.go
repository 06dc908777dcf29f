// Package hf reads and writes dense Llama models in Hugging Face's layout
// (LlamaForCausalLM, as Llama 2 and Llama 3 are published): config.json plus
// model.safetensors, or shards listed by model.safetensors.index.json. It converts between
// Hugging Face's tensor names and RoPE layout and herd's (docs/model.md), so that a
// pretrained Llama can start a herd run (init.from) and a herd model can be loaded by
// transformers (herd export --format hf).
//
// Only what both sides compute identically is accepted: Llama 4, mixture-of-experts
// models, rope_scaling, biases and a head_dim other than hidden_size/num_attention_heads
// are refused with a user error, never read approximately.
package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/model"
)

// Architecture is the only config.json "architectures" entry herd reads and writes.
const Architecture = "LlamaForCausalLM"

// Files a Hugging Face model folder holds.
const (
	ConfigFile = "config.json"
	WeightFile = "model.safetensors"
	IndexFile  = "model.safetensors.index.json"
)

// Config is the part of a Hugging Face Llama config.json herd uses. Pointers tell a key
// left out (transformers' LlamaConfig default applies) from one set to its zero value.
type Config struct {
	Architectures     []string        `json:"architectures"`
	ModelType         string          `json:"model_type"`
	HiddenSize        int             `json:"hidden_size"`
	NumHiddenLayers   int             `json:"num_hidden_layers"`
	NumAttentionHeads int             `json:"num_attention_heads"`
	NumKeyValueHeads  int             `json:"num_key_value_heads,omitempty"`
	IntermediateSize  int             `json:"intermediate_size"`
	VocabSize         int             `json:"vocab_size"`
	RMSNormEps        *float64        `json:"rms_norm_eps,omitempty"`
	RopeTheta         *float64        `json:"rope_theta,omitempty"`
	MaxPositions      int             `json:"max_position_embeddings,omitempty"`
	TieWordEmbeddings bool            `json:"tie_word_embeddings"`
	HiddenAct         string          `json:"hidden_act,omitempty"`
	HeadDim           int             `json:"head_dim,omitempty"`
	AttentionBias     bool            `json:"attention_bias"`
	MLPBias           bool            `json:"mlp_bias"`
	RopeScaling       json.RawMessage `json:"rope_scaling,omitempty"`
	NumLocalExperts   int             `json:"num_local_experts,omitempty"`
	TorchDType        string          `json:"torch_dtype,omitempty"`
}

// IsFolder reports whether dir looks like a Hugging Face model folder (it has a
// config.json naming architectures), as opposed to a herd checkpoint or export.
func IsFolder(dir string) bool {
	js, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return false
	}
	var c struct {
		Architectures []string `json:"architectures"`
	}
	return json.Unmarshal(js, &c) == nil && c.Architectures != nil
}

// ReadConfig reads dir/config.json and returns the herd model config it describes:
// seq_len is max_position_embeddings, RoPE on every layer, no experts, no vision. What
// herd cannot compute exactly as transformers does is a user error naming the file and
// the key.
func ReadConfig(dir string) (model.Config, bool, error) {
	where := filepath.Join(dir, ConfigFile)
	js, err := os.ReadFile(where)
	if err != nil {
		return model.Config{}, false, usererr.New(where, "cannot read the Hugging Face config: %v", unwrapPath(err))
	}
	var c Config
	if err := json.Unmarshal(js, &c); err != nil {
		return model.Config{}, false, usererr.New(where, "not a Hugging Face config: %v", err)
	}
	if !slices.Equal(c.Architectures, []string{Architecture}) {
		return model.Config{}, false, usererr.New(where, "unsupported architecture %s: herd reads %s (dense Llama 2/3); Llama 4 and mixture-of-experts models are not supported yet",
			strings.Join(c.Architectures, ", "), Architecture)
	}
	refuse := func(key, what string) error {
		return usererr.New(where, "%s: %s; herd reads dense Llama 2/3 models without it", key, what)
	}
	switch {
	case c.NumLocalExperts > 0:
		return model.Config{}, false, refuse("num_local_experts", fmt.Sprint(c.NumLocalExperts))
	case len(c.RopeScaling) > 0 && string(c.RopeScaling) != "null":
		return model.Config{}, false, refuse("rope_scaling", string(c.RopeScaling)+" (Llama 3.1+ frequency scaling is not supported yet)")
	case c.AttentionBias:
		return model.Config{}, false, refuse("attention_bias", "true")
	case c.MLPBias:
		return model.Config{}, false, refuse("mlp_bias", "true")
	case c.HiddenAct != "" && c.HiddenAct != "silu":
		return model.Config{}, false, refuse("hidden_act", c.HiddenAct)
	case c.NumAttentionHeads > 0 && c.HeadDim != 0 && c.HeadDim*c.NumAttentionHeads != c.HiddenSize:
		return model.Config{}, false, refuse("head_dim", fmt.Sprintf("%d is not hidden_size/num_attention_heads", c.HeadDim))
	}
	for _, k := range []struct {
		key string
		v   int
	}{{"hidden_size", c.HiddenSize}, {"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads},
		{"intermediate_size", c.IntermediateSize}, {"vocab_size", c.VocabSize}} {
		if k.v <= 0 {
			return model.Config{}, false, usererr.New(where, "%s: must be a positive integer, got %d", k.key, k.v)
		}
	}
	m := model.Config{
		VocabSize: c.VocabSize, DModel: c.HiddenSize, NLayers: c.NumHiddenLayers, NHeads: c.NumAttentionHeads,
		NKVHeads: c.NumKeyValueHeads, FFNHidden: c.IntermediateSize, SeqLen: c.MaxPositions,
		RopeTheta: 10000, NormEps: 1e-6, // LlamaConfig's defaults
	}
	if m.NKVHeads == 0 {
		m.NKVHeads = m.NHeads
	}
	if m.SeqLen == 0 {
		m.SeqLen = 2048
	}
	if c.RopeTheta != nil {
		m.RopeTheta = *c.RopeTheta
	}
	if c.RMSNormEps != nil {
		m.NormEps = *c.RMSNormEps
	}
	if err := m.Validate(); err != nil {
		return model.Config{}, false, usererr.New(where, "%v", err)
	}
	return m, c.TieWordEmbeddings, nil
}

// names maps each herd tensor of a dense model to its Hugging Face name, and says whether
// it is a query or key projection, whose rows RoPE's layouts order differently.
func names(cfg model.Config) (hfName map[string]string, rope map[string]bool) {
	hfName, rope = map[string]string{
		"tok_embeddings.weight": "model.embed_tokens.weight",
		"norm.weight":           "model.norm.weight",
		"output.weight":         "lm_head.weight",
	}, map[string]bool{}
	for i := range cfg.NLayers {
		h, p := fmt.Sprintf("layers.%d.", i), fmt.Sprintf("model.layers.%d.", i)
		for herd, hf := range map[string]string{
			"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
			"attn.wq": "self_attn.q_proj.weight", "attn.wk": "self_attn.k_proj.weight",
			"attn.wv": "self_attn.v_proj.weight", "attn.wo": "self_attn.o_proj.weight",
			"ffn.w1": "mlp.gate_proj.weight", "ffn.w3": "mlp.up_proj.weight", "ffn.w2": "mlp.down_proj.weight",
		} {
			hfName[h+herd] = p + hf
		}
		rope[h+"attn.wq"], rope[h+"attn.wk"] = true, true
	}
	return hfName, rope
}

// Read loads the Hugging Face Llama in dir: its herd model config and every tensor by its
// herd name, in model.NewLayout order, with q and k rows in herd's RoPE layout. Weights
// may be F32, BF16 or F16, single-file or sharded; a tied LM head is copied from the
// embedding (herd's head is untied). A missing shard or file, and a tensor missing, extra
// or of the wrong shape, is a user error naming it.
func Read(dir string) (model.Config, []checkpoint.Tensor, error) {
	cfg, tied, err := ReadConfig(dir)
	if err != nil {
		return cfg, nil, err
	}
	lay := model.NewLayout(cfg)
	hfName, rope := names(cfg)
	flat := make([]float32, lay.Total)
	byHF := map[string]checkpoint.Tensor{} // Hugging Face name -> destination, in HF layout
	var out []checkpoint.Tensor
	for _, t := range lay.Tensors {
		ht := checkpoint.Tensor{Name: t.Name, Shape: t.Shape, Data: flat[t.Offset : t.Offset+t.Size()]}
		out = append(out, ht)
		if tied && t.Name == "output.weight" {
			continue
		}
		dst := ht
		if rope[t.Name] {
			dst.Data = make([]float32, t.Size()) // permuted into ht below
		}
		dst.Name = hfName[t.Name]
		byHF[dst.Name] = dst
	}
	files, err := shards(dir, byHF)
	if err != nil {
		return cfg, nil, err
	}
	for _, f := range files {
		if err := readFile(filepath.Join(dir, f.name), f.tensors); err != nil {
			return cfg, nil, err
		}
	}
	D := cfg.HeadDim()
	for _, t := range out {
		switch {
		case rope[t.Name]:
			permute(t.Data, byHF[hfName[t.Name]].Data, D, cfg.DModel, false)
		case tied && t.Name == "output.weight":
			emb, _ := lay.Lookup("tok_embeddings.weight")
			copy(t.Data, flat[emb.Offset:emb.Offset+emb.Size()])
		}
	}
	return cfg, out, nil
}

type shard struct {
	name    string
	tensors []checkpoint.Tensor
}

// shards assigns each expected tensor to the file holding it: model.safetensors, or the
// shards model.safetensors.index.json lists, in the order of their names.
func shards(dir string, want map[string]checkpoint.Tensor) ([]shard, error) {
	all := make([]checkpoint.Tensor, 0, len(want))
	for _, t := range want {
		all = append(all, t)
	}
	sort.Slice(all, func(a, b int) bool { return all[a].Name < all[b].Name })
	where := filepath.Join(dir, IndexFile)
	js, err := os.ReadFile(where)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, WeightFile)); err != nil {
			return nil, usererr.New(filepath.Join(dir, WeightFile), "no weights: want %s or %s with its shards", WeightFile, IndexFile)
		}
		return []shard{{WeightFile, all}}, nil
	}
	if err != nil {
		return nil, usererr.New(where, "cannot read: %v", unwrapPath(err))
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(js, &idx); err != nil {
		return nil, usererr.New(where, "not a safetensors index: %v", err)
	}
	byFile := map[string][]checkpoint.Tensor{}
	for name, file := range idx.WeightMap {
		if _, ok := want[name]; !ok {
			return nil, usererr.New(where, "unexpected tensor %s: not part of a %s with this config", name, Architecture)
		}
		if file != filepath.Base(file) || file == "." || file == ".." {
			return nil, usererr.New(where, "tensor %s: shard %q must be a file name in the model folder", name, file)
		}
		byFile[file] = append(byFile[file], want[name])
	}
	for _, t := range all {
		if _, ok := idx.WeightMap[t.Name]; !ok {
			return nil, usererr.New(where, "tensor %s missing from weight_map", t.Name)
		}
	}
	var out []shard
	for file, ts := range byFile {
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			return nil, usererr.New(filepath.Join(dir, file), "missing shard (listed in %s): %v", IndexFile, unwrapPath(err))
		}
		sort.Slice(ts, func(a, b int) bool { return ts[a].Name < ts[b].Name })
		out = append(out, shard{file, ts})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].name < out[b].name })
	return out, nil
}

// readFile reads one safetensors file, which must hold exactly tensors.
func readFile(path string, tensors []checkpoint.Tensor) error {
	f, err := os.Open(path)
	if err != nil {
		return usererr.New(path, "cannot read: %v", unwrapPath(err))
	}
	defer f.Close()
	if _, err := checkpoint.ReadSafetensors(f, tensors); err != nil {
		return usererr.New(path, "%v", err)
	}
	return nil
}

// permute reorders the rows of a q or k projection ([heads·D, C]) between the two RoPE
// layouts. Hugging Face's rotate_half pairs feature j of a head with feature j+D/2; herd
// (as Meta's reference code) pairs 2j with 2j+1, both rotating pair j by
// pos·theta^(-2j/D). So herd row 2j is HF row j and herd row 2j+1 is HF row j+D/2, per
// head; toHF inverts it. This is the permutation transformers' convert_llama_weights_to_hf
// applies to Meta's checkpoints.
func permute(herd, hf []float32, D, C int, toHF bool) {
	rows := len(herd) / C
	for h := 0; h < rows/D; h++ {
		for j := range D / 2 {
			for k, src := range [2]int{j, j + D/2} {
				hr, fr := (h*D+2*j+k)*C, (h*D+src)*C
				if toHF {
					copy(hf[fr:fr+C], herd[hr:hr+C])
				} else {
					copy(herd[hr:hr+C], hf[fr:fr+C])
				}
			}
		}
	}
}

// unwrapPath drops the path an *fs.PathError repeats, since messages name the file first.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
