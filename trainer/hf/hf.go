// Package hf reads and writes Llama models in Hugging Face's layout: dense Llama 2/3/3.1
// (LlamaForCausalLM) and the text model of Llama 4 (Llama4ForCausalLM, or the language
// model inside Llama4ForConditionalGeneration), as config.json plus model.safetensors or
// shards listed by model.safetensors.index.json. It converts between Hugging Face's
// tensor names, expert and RoPE layouts and herd's (docs/checkpoint.md), so that a
// pretrained Llama can start a herd run (init.from) and a herd model can be loaded by
// transformers (herd export --format hf).
//
// Only what both sides compute identically is accepted: biases, another activation, a
// rope_scaling other than Llama 3.1's "llama3", a head_dim other than
// hidden_size/num_attention_heads, and layer patterns herd cannot express (MoE or NoPE
// layers not every k-th layer) are refused with a user error naming the key, never read
// approximately.
package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/model"
)

// The config.json "architectures" herd reads. Write writes the first two.
const (
	Llama      = "LlamaForCausalLM"
	Llama4     = "Llama4ForCausalLM"
	Llama4Chat = "Llama4ForConditionalGeneration" // text model only; vision tower skipped
)

// Files a Hugging Face model folder holds.
const (
	ConfigFile = "config.json"
	WeightFile = "model.safetensors"
	IndexFile  = "model.safetensors.index.json"
)

// MaxSeqLen is the longest model.seq_len an import takes from max_position_embeddings.
// seq_len is the length of herd's training sequences, not a weight shape, and Llama 3.1
// and Llama 4 declare 128K and 10M positions; a run may set model.seq_len to any length.
const MaxSeqLen = 8192

// Config is the part of a Hugging Face config.json herd uses: LlamaConfig's keys and
// Llama4TextConfig's. Pointers tell a key left out (transformers' default applies, which
// differs between the two) from one set to its zero value.
type Config struct {
	Architectures     []string     `json:"architectures"`
	ModelType         string       `json:"model_type"`
	HiddenSize        *int         `json:"hidden_size"`
	NumHiddenLayers   *int         `json:"num_hidden_layers"`
	NumAttentionHeads *int         `json:"num_attention_heads"`
	NumKeyValueHeads  *int         `json:"num_key_value_heads,omitempty"`
	HeadDim           *int         `json:"head_dim,omitempty"`
	IntermediateSize  *int         `json:"intermediate_size"`
	VocabSize         *int         `json:"vocab_size"`
	RMSNormEps        *float64     `json:"rms_norm_eps,omitempty"`
	RopeTheta         *float64     `json:"rope_theta,omitempty"`
	RopeScaling       *RopeScaling `json:"rope_scaling"`
	RopeParameters    *RopeScaling `json:"rope_parameters,omitempty"` // transformers 5's rope_theta and rope_scaling in one
	MaxPositions      *int         `json:"max_position_embeddings,omitempty"`
	TieWordEmbeddings bool         `json:"tie_word_embeddings"`
	HiddenAct         string       `json:"hidden_act,omitempty"`
	AttentionBias     bool         `json:"attention_bias"`
	MLPBias           bool         `json:"mlp_bias,omitempty"`
	TorchDType        string       `json:"torch_dtype,omitempty"`

	// Llama 4 only.
	IntermediateSizeMLP    *int            `json:"intermediate_size_mlp,omitempty"`
	NumLocalExperts        *int            `json:"num_local_experts,omitempty"`
	NumExpertsPerTok       *int            `json:"num_experts_per_tok,omitempty"`
	InterleaveMoELayerStep *int            `json:"interleave_moe_layer_step,omitempty"`
	MoELayers              []int           `json:"moe_layers,omitempty"`
	RouterAuxLossCoef      *float64        `json:"router_aux_loss_coef,omitempty"`
	NoRopeLayers           []int           `json:"no_rope_layers,omitempty"`
	NoRopeLayerInterval    *int            `json:"no_rope_layer_interval,omitempty"`
	UseQKNorm              *bool           `json:"use_qk_norm,omitempty"`
	AttnTemperatureTuning  *bool           `json:"attn_temperature_tuning,omitempty"`
	FloorScale             *float64        `json:"floor_scale,omitempty"`
	AttnScale              *float64        `json:"attn_scale,omitempty"`
	AttentionChunkSize     json.RawMessage `json:"attention_chunk_size,omitempty"` // absent: 8192; null: none
	LayerTypes             []string        `json:"layer_types,omitempty"`

	// Llama4ForConditionalGeneration: the text model's config.
	TextConfig json.RawMessage `json:"text_config,omitempty"`
}

// RopeScaling is config.json's rope_scaling, or its rope_parameters (which also hold
// rope_theta). herd computes rope_type (or, in older configs, type) "llama3" only
// (model.RopeFreqs).
type RopeScaling struct {
	RopeTheta            *float64 `json:"rope_theta,omitempty"` // rope_parameters only
	RopeType             string   `json:"rope_type,omitempty"`
	Type                 string   `json:"type,omitempty"`
	Factor               *float64 `json:"factor,omitempty"`
	LowFreqFactor        *float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor       *float64 `json:"high_freq_factor,omitempty"`
	OriginalMaxPositions *int     `json:"original_max_position_embeddings,omitempty"`
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

// source is what config.json says about a folder's model.
type source struct {
	cfg    model.Config
	tied   bool   // no lm_head.weight: the head is the embedding
	llama4 bool   // Llama 4's tensor names and layouts
	prefix string // of every text tensor's name: "language_model." in Llama4ForConditionalGeneration
}

// ReadConfig reads dir/config.json and returns the herd model config it describes and
// whether the LM head is tied to the embedding. seq_len is max_position_embeddings, at
// most MaxSeqLen. What herd cannot compute exactly as transformers does is a user error
// naming the file and the key.
func ReadConfig(dir string) (model.Config, bool, error) {
	s, err := readSource(dir)
	return s.cfg, s.tied, err
}

func readSource(dir string) (source, error) {
	where := filepath.Join(dir, ConfigFile)
	js, err := os.ReadFile(where)
	if err != nil {
		return source{}, usererr.New(where, "cannot read the Hugging Face config: %v", unwrapPath(err))
	}
	var c Config
	if err := json.Unmarshal(js, &c); err != nil {
		return source{}, usererr.New(where, "not a Hugging Face config: %v", err)
	}
	arch := strings.Join(c.Architectures, ", ")
	var s source
	switch arch {
	case Llama:
		s.cfg, err = c.llama(where)
	case Llama4:
		s.llama4 = true
		s.cfg, err = c.llama4(where, "")
	case Llama4Chat:
		s.llama4, s.prefix = true, "language_model."
		var text Config
		if len(c.TextConfig) == 0 || json.Unmarshal(c.TextConfig, &text) != nil {
			return s, usererr.New(where, "text_config: missing or not an object; %s keeps its text model's config there", Llama4Chat)
		}
		text.TieWordEmbeddings = text.TieWordEmbeddings || c.TieWordEmbeddings
		c = text
		s.cfg, err = c.llama4(where, "text_config.")
	default:
		return s, usererr.New(where, "unsupported architecture %q: herd reads %s (Llama 2/3/3.1), %s and the text model of %s",
			arch, Llama, Llama4, Llama4Chat)
	}
	s.tied = c.TieWordEmbeddings
	if err == nil {
		if verr := s.cfg.Validate(); verr != nil {
			err = usererr.New(where, "%v", verr)
		}
	}
	return s, err
}

// refuse is the error for a config key whose value herd cannot compute as transformers does.
func refuse(where, key, format string, args ...any) error {
	return usererr.New(where, "%s: %s", key, fmt.Sprintf(format, args...))
}

// common maps the keys Llama and Llama 4 share. def holds the defaults of the
// architecture's transformers config class, for keys left out.
func (c Config) common(where, key string, def model.Config) (model.Config, error) {
	switch {
	case c.AttentionBias:
		return def, refuse(where, key+"attention_bias", "true; herd's projections have no biases")
	case c.MLPBias:
		return def, refuse(where, key+"mlp_bias", "true; herd's projections have no biases")
	case c.HiddenAct != "" && c.HiddenAct != "silu":
		return def, refuse(where, key+"hidden_act", "%s; herd's feed-forward is SwiGLU (silu)", c.HiddenAct)
	}
	m := def
	for _, k := range []struct {
		key string
		v   *int
		dst *int
	}{{"hidden_size", c.HiddenSize, &m.DModel}, {"num_hidden_layers", c.NumHiddenLayers, &m.NLayers},
		{"num_attention_heads", c.NumAttentionHeads, &m.NHeads}, {"vocab_size", c.VocabSize, &m.VocabSize}} {
		if k.v != nil {
			*k.dst = *k.v
		}
		if *k.dst <= 0 {
			return def, usererr.New(where, "%s%s: must be a positive integer, got %d", key, k.key, *k.dst)
		}
	}
	if m.NKVHeads == 0 {
		m.NKVHeads = m.NHeads // LlamaConfig: multi-head attention
	}
	if c.NumKeyValueHeads != nil {
		m.NKVHeads = *c.NumKeyValueHeads
	}
	if c.HeadDim != nil && *c.HeadDim*m.NHeads != m.DModel {
		return def, refuse(where, key+"head_dim", "%d is not hidden_size/num_attention_heads (%d/%d); herd's head dim is their quotient",
			*c.HeadDim, m.DModel, m.NHeads)
	}
	rope, ropeKey := c.RopeScaling, "rope_scaling"
	if c.RopeParameters != nil { // transformers 5 writes these instead of rope_theta and rope_scaling
		rope, ropeKey = c.RopeParameters, "rope_parameters"
		if c.RopeTheta == nil {
			c.RopeTheta = rope.RopeTheta
		}
	}
	if c.RopeTheta != nil {
		m.RopeTheta = *c.RopeTheta
	}
	if c.RMSNormEps != nil {
		m.NormEps = *c.RMSNormEps
	}
	if c.MaxPositions != nil {
		m.SeqLen = *c.MaxPositions
	}
	m.SeqLen = min(m.SeqLen, MaxSeqLen)
	var err error
	m.RopeScaling, err = rope.read(where, key+ropeKey)
	return m, err
}

// read maps rope_scaling to herd's; nil (absent or null) and rope_type "default" are none.
func (r *RopeScaling) read(where, key string) (model.RopeScaling, error) {
	if r == nil {
		return model.RopeScaling{}, nil
	}
	typ := r.RopeType
	if typ == "" {
		typ = r.Type
	}
	switch typ {
	case "default":
		return model.RopeScaling{}, nil
	case "llama3":
	default:
		return model.RopeScaling{}, refuse(where, key, "rope_type %q: herd computes \"llama3\" (Llama 3.1, Llama 4) only", typ)
	}
	for _, k := range []struct {
		name string
		set  bool
	}{{"factor", r.Factor != nil}, {"low_freq_factor", r.LowFreqFactor != nil}, {"high_freq_factor", r.HighFreqFactor != nil},
		{"original_max_position_embeddings", r.OriginalMaxPositions != nil}} {
		if !k.set {
			return model.RopeScaling{}, refuse(where, key+"."+k.name, "missing; rope_type llama3 needs it")
		}
	}
	return model.RopeScaling{Factor: *r.Factor, LowFreqFactor: *r.LowFreqFactor, HighFreqFactor: *r.HighFreqFactor,
		OriginalMaxPositions: *r.OriginalMaxPositions}, nil
}

// llama maps a LlamaForCausalLM config: RoPE on every layer, dense feed-forward.
func (c Config) llama(where string) (model.Config, error) {
	if c.NumLocalExperts != nil && *c.NumLocalExperts > 0 {
		return model.Config{}, refuse(where, "num_local_experts", "%d; a %s is dense (Llama 4's experts need architectures %s)",
			*c.NumLocalExperts, Llama, Llama4)
	}
	m, err := c.common(where, "", model.Config{SeqLen: 2048, RopeTheta: 10000, NormEps: 1e-6}) // LlamaConfig's defaults
	if err != nil {
		return m, err
	}
	if c.IntermediateSize == nil || *c.IntermediateSize <= 0 {
		return m, usererr.New(where, "intermediate_size: must be a positive integer")
	}
	m.FFNHidden = *c.IntermediateSize
	return m, nil
}

// unwrapPath drops the path an *fs.PathError repeats, since messages name the file first.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
