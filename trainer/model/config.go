// Package model is herd's Llama-4-style decoder: token embedding with early-fused image
// patches, grouped-query attention with RoPE (skipped on every k-th layer), SwiGLU
// feed-forward, dense or mixture-of-experts, and an untied LM head. Forward and backward
// are written by hand, layer by layer, on a kernels.Backend.
package model

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/herdml/herd/internal/usererr"
)

// Config is the model's shape. Keys are the YAML keys under `model:`.
type Config struct {
	Preset    string  `yaml:"preset,omitempty" json:"preset,omitempty"` // start from a named preset; keys below override it
	VocabSize int     `yaml:"vocab_size" json:"vocab_size"`             // token ids are in [0, vocab_size)
	DModel    int     `yaml:"d_model" json:"d_model"`                   // residual stream width C
	NLayers   int     `yaml:"n_layers" json:"n_layers"`                 // transformer blocks L
	NHeads    int     `yaml:"n_heads" json:"n_heads"`                   // query heads H; head dim D = d_model / n_heads
	NKVHeads  int     `yaml:"n_kv_heads" json:"n_kv_heads"`             // key/value heads; divides n_heads (grouped-query attention)
	FFNHidden int     `yaml:"ffn_hidden" json:"ffn_hidden"`             // SwiGLU hidden width of dense layers
	SeqLen    int     `yaml:"seq_len" json:"seq_len"`                   // positions per packed training sequence T
	RopeTheta float64 `yaml:"rope_theta" json:"rope_theta"`             // RoPE base frequency
	NoPEEvery int     `yaml:"nope_every" json:"nope_every"`             // layers i with (i+1) % k == 0 use no RoPE; 0 = RoPE everywhere
	NormEps   float64 `yaml:"norm_eps" json:"norm_eps"`                 // RMSNorm epsilon
	MoE       MoE     `yaml:"moe" json:"moe"`
	Vision    Vision  `yaml:"vision" json:"vision"`

	// Llama 4's attention options and Llama 3.1's RoPE frequency scaling, off by default
	// (docs/model.md). They are encoded only when set, so that the config hashes of models
	// without them stay what they were.
	QKNorm          bool            `yaml:"qk_norm,omitempty" json:"qk_norm,omitempty"`                  // L2-normalise each head's q and k after RoPE, on RoPE layers
	AttnTemperature AttnTemperature `yaml:"attn_temperature,omitempty" json:"attn_temperature,omitzero"` // scale q by position on NoPE layers
	AttentionChunk  int             `yaml:"attention_chunk,omitempty" json:"attention_chunk,omitempty"`  // RoPE layers attend only within chunks of this many positions; 0 = the whole sequence
	RopeScaling     RopeScaling     `yaml:"rope_scaling,omitempty" json:"rope_scaling,omitzero"`         // Llama 3.1's frequency scaling of RoPE
}

// AttnTemperature is Llama 4's attention temperature tuning on the NoPE layers: the query
// at position p is multiplied by 1 + scale·log(1 + floor((p+1)/floor_scale)), which keeps
// attention sharp over long contexts. FloorScale = 0 turns it off.
type AttnTemperature struct {
	FloorScale float64 `yaml:"floor_scale" json:"floor_scale"` // > 0 when on (Llama 4: 8192)
	Scale      float64 `yaml:"scale" json:"scale"`             // Llama 4: 0.1
}

// RopeScaling is the "llama3" rope_scaling of Hugging Face's Llama 3.1 and Llama 4
// configs: RoPE's inverse frequencies with wavelengths above
// original_max_positions/low_freq_factor are divided by factor, those below
// original_max_positions/high_freq_factor kept, and those between interpolated smoothly
// (RopeFreqs).
// Factor = 0 turns it off.
type RopeScaling struct {
	Factor               float64 `yaml:"factor" json:"factor"`
	LowFreqFactor        float64 `yaml:"low_freq_factor" json:"low_freq_factor"`
	HighFreqFactor       float64 `yaml:"high_freq_factor" json:"high_freq_factor"`
	OriginalMaxPositions int     `yaml:"original_max_positions" json:"original_max_positions"`
}

// MoE configures the mixture-of-experts feed-forward layers. Experts = 0 means all dense.
type MoE struct {
	Experts      int     `yaml:"experts" json:"experts"`             // routed experts E per MoE layer
	TopK         int     `yaml:"top_k" json:"top_k"`                 // experts each token is routed to
	SharedExpert bool    `yaml:"shared_expert" json:"shared_expert"` // one always-on expert beside the routed ones
	Every        int     `yaml:"every" json:"every"`                 // layers i with (i+1) % every == 0 are MoE (1 = all, 2 = alternate)
	ExpertHidden int     `yaml:"expert_hidden" json:"expert_hidden"` // SwiGLU hidden width of each expert
	AuxLoss      float64 `yaml:"aux_loss" json:"aux_loss"`           // load-balancing loss coefficient
	// ScoreOnInput multiplies a routed expert's input by its gate (Llama 4) instead of its
	// output (herd's default); encoded only when set, as the model's Llama 4 options.
	ScoreOnInput bool `yaml:"score_on_input,omitempty" json:"score_on_input,omitempty"`
}

// Vision configures early-fused image patches. Patch = 0 means a text-only model.
type Vision struct {
	Patch    int `yaml:"patch" json:"patch"`       // patch side p in pixels
	Channels int `yaml:"channels" json:"channels"` // colour channels C; a patch has p*p*C pixels
}

// Presets are named starting points. tiny and small train on a CPU; scout and maverick
// have Llama 4's shapes (17B active parameters) for planning.
var Presets = map[string]Config{
	"tiny": {
		VocabSize: 256, DModel: 128, NLayers: 4, NHeads: 4, NKVHeads: 2, FFNHidden: 384,
		SeqLen: 256, RopeTheta: 500000, NoPEEvery: 4, NormEps: 1e-5,
		MoE: MoE{Experts: 4, TopK: 1, SharedExpert: true, Every: 2, ExpertHidden: 256, AuxLoss: 0.01},
	},
	"small": {
		VocabSize: 256, DModel: 256, NLayers: 6, NHeads: 8, NKVHeads: 4, FFNHidden: 768,
		SeqLen: 256, RopeTheta: 500000, NoPEEvery: 4, NormEps: 1e-5,
		MoE: MoE{Experts: 8, TopK: 1, SharedExpert: true, Every: 2, ExpertHidden: 512, AuxLoss: 0.01},
	},
	// Llama 4 Scout: 16 routed experts plus a shared one on every layer, 109B total.
	"scout": {
		VocabSize: 202048, DModel: 5120, NLayers: 48, NHeads: 40, NKVHeads: 8, FFNHidden: 16384,
		SeqLen: 8192, RopeTheta: 500000, NoPEEvery: 4, NormEps: 1e-5,
		MoE:    MoE{Experts: 16, TopK: 1, SharedExpert: true, Every: 1, ExpertHidden: 8192, AuxLoss: 0.001},
		Vision: Vision{Patch: 14, Channels: 3},
	},
	// Llama 4 Maverick: 128 routed experts plus a shared one on every other layer, 400B total.
	"maverick": {
		VocabSize: 202048, DModel: 5120, NLayers: 48, NHeads: 40, NKVHeads: 8, FFNHidden: 16384,
		SeqLen: 8192, RopeTheta: 500000, NoPEEvery: 4, NormEps: 1e-5,
		MoE:    MoE{Experts: 128, TopK: 1, SharedExpert: true, Every: 2, ExpertHidden: 8192, AuxLoss: 0.001},
		Vision: Vision{Patch: 14, Channels: 3},
	},
}

// PresetNames lists the presets in a stable order, for messages.
func PresetNames() []string {
	names := make([]string, 0, len(Presets))
	for n := range Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HeadDim is D, the width of one attention head.
func (c Config) HeadDim() int { return c.DModel / c.NHeads }

// IsMoE reports whether layer i (0-based) has a mixture-of-experts feed-forward.
func (c Config) IsMoE(i int) bool { return c.MoE.Experts > 0 && (i+1)%c.MoE.Every == 0 }

// UsesRoPE reports whether layer i (0-based) applies rotary position embeddings.
func (c Config) UsesRoPE(i int) bool { return c.NoPEEvery == 0 || (i+1)%c.NoPEEvery != 0 }

// PatchPixels is P, the number of raw pixel values in one image patch (0 without vision).
func (c Config) PatchPixels() int { return c.Vision.Patch * c.Vision.Patch * c.Vision.Channels }

// Validate checks every size and relation. Errors are user errors naming the key path
// under `model.` and what is allowed.
func (c Config) Validate() error {
	key := func(k string) string { return "model." + k }
	if c.Preset != "" {
		if _, ok := Presets[c.Preset]; !ok {
			return usererr.New(key("preset"), "unknown preset %q; allowed: %s", c.Preset, strings.Join(PresetNames(), ", "))
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"d_model", c.DModel}, {"n_layers", c.NLayers},
		{"n_heads", c.NHeads}, {"n_kv_heads", c.NKVHeads}, {"ffn_hidden", c.FFNHidden}, {"seq_len", c.SeqLen},
	} {
		if f.v <= 0 {
			return usererr.New(key(f.name), "must be a positive integer, got %d", f.v)
		}
		if f.v > MaxSize {
			return usererr.New(key(f.name), "must be at most %d, got %d", MaxSize, f.v)
		}
	}
	if c.NLayers > MaxLayers {
		return usererr.New(key("n_layers"), "must be at most %d, got %d", MaxLayers, c.NLayers)
	}
	if c.DModel%c.NHeads != 0 {
		return usererr.New(key("n_heads"), "must divide d_model (%d), got %d", c.DModel, c.NHeads)
	}
	if c.HeadDim()%2 != 0 {
		return usererr.New(key("n_heads"), "head dim d_model/n_heads = %d must be even for RoPE", c.HeadDim())
	}
	if c.NHeads%c.NKVHeads != 0 {
		return usererr.New(key("n_kv_heads"), "must divide n_heads (%d), got %d", c.NHeads, c.NKVHeads)
	}
	if !(c.RopeTheta > 0) {
		return usererr.New(key("rope_theta"), "must be positive, got %g", c.RopeTheta)
	}
	if c.NoPEEvery < 0 {
		return usererr.New(key("nope_every"), "must be 0 (RoPE everywhere) or positive, got %d", c.NoPEEvery)
	}
	if !(c.NormEps > 0) {
		return usererr.New(key("norm_eps"), "must be positive, got %g", c.NormEps)
	}
	if err := c.MoE.validate(); err != nil {
		return err
	}
	if err := c.validateLlama4(); err != nil {
		return err
	}
	if c.Vision.Patch < 0 || c.Vision.Channels < 0 || (c.Vision.Patch > 0) != (c.Vision.Channels > 0) {
		return usererr.New(key("vision"), "patch and channels must both be positive (or both 0 for text only), got patch %d, channels %d",
			c.Vision.Patch, c.Vision.Channels)
	}
	if c.Vision.Patch > MaxPatch || c.Vision.Channels > MaxPatch {
		return usererr.New(key("vision"), "patch and channels must be at most %d each, got patch %d, channels %d",
			MaxPatch, c.Vision.Patch, c.Vision.Channels)
	}
	return c.checkParams()
}

// Size bounds. Each size is at most MaxSize, so that any two multiply within int64;
// n_layers at most MaxLayers, since the layout holds about a dozen named tensors per
// layer and planning walks them all; a patch side and its channels at most MaxPatch, so
// that a patch's pixel count is itself a size. Products of three or more sizes (the
// parameter count, the activations) are bounded by MaxPlanBytes instead.
const (
	MaxSize   = 1<<31 - 1
	MaxLayers = 1 << 12
	MaxPatch  = 1 << 12
)

// checkParams refuses a shape whose weights, gradients and optimizer state would not fit
// in MaxPlanBytes: NewPlan and NewLayout count them in integers, which would wrap.
func (c Config) checkParams() error {
	if b := ParamBytes * ParamCount(c); b > MaxPlanBytes {
		return usererr.New(c.widest(), "%.3g parameters need %.3g bytes of weights, gradients and optimizer state per rank, "+
			"more than herd can plan for (%.3g, 2^62); reduce d_model (%d), vocab_size (%d), ffn_hidden (%d), n_layers (%d) "+
			"or moe.experts × moe.expert_hidden (%d × %d)",
			ParamCount(c), b, float64(MaxPlanBytes), c.DModel, c.VocabSize, c.FFNHidden, c.NLayers, c.MoE.Experts, c.MoE.ExpertHidden)
	}
	return nil
}

// validateLlama4 checks the attention and RoPE options of Llama 4 and Llama 3.1.
func (c Config) validateLlama4() error {
	key := func(k string) string { return "model." + k }
	t, r := c.AttnTemperature, c.RopeScaling
	switch {
	case c.AttentionChunk < 0 || c.AttentionChunk > MaxSize:
		return usererr.New(key("attention_chunk"), "must be 0 (the whole sequence) or a positive number of positions, got %d", c.AttentionChunk)
	case !(t.FloorScale >= 0) || math.IsInf(t.FloorScale, 0):
		return usererr.New(key("attn_temperature.floor_scale"), "must be 0 (off) or positive, got %g", t.FloorScale)
	case t.FloorScale == 0 && t.Scale != 0:
		return usererr.New(key("attn_temperature.scale"), "is %g but floor_scale is 0 (off); set both or neither", t.Scale)
	case !(t.Scale >= 0) || math.IsInf(t.Scale, 0):
		return usererr.New(key("attn_temperature.scale"), "must be at least 0, got %g", t.Scale)
	case r == RopeScaling{}:
		return nil
	case !(r.Factor >= 1) || math.IsInf(r.Factor, 0):
		return usererr.New(key("rope_scaling.factor"), "must be at least 1 (or all of rope_scaling unset), got %g", r.Factor)
	case !(r.LowFreqFactor > 0) || !(r.HighFreqFactor >= r.LowFreqFactor) || math.IsInf(r.HighFreqFactor, 0):
		return usererr.New(key("rope_scaling"), "low_freq_factor (%g) must be positive and at most high_freq_factor (%g)", r.LowFreqFactor, r.HighFreqFactor)
	case r.OriginalMaxPositions <= 0 || r.OriginalMaxPositions > MaxSize:
		return usererr.New(key("rope_scaling.original_max_positions"), "must be a positive number of positions, got %d", r.OriginalMaxPositions)
	}
	return nil
}

func (m MoE) validate() error {
	if m.Experts == 0 {
		return nil
	}
	key := func(k string) string { return "model.moe." + k }
	switch {
	case m.Experts < 0:
		return usererr.New(key("experts"), "must be 0 (dense) or positive, got %d", m.Experts)
	case m.TopK <= 0:
		return usererr.New(key("top_k"), "must be positive, got %d", m.TopK)
	case m.TopK > m.Experts:
		return usererr.New(key("top_k"), "must be at most experts (%d), got %d", m.Experts, m.TopK)
	case m.Every <= 0:
		return usererr.New(key("every"), "must be positive (1 = every layer), got %d", m.Every)
	case m.Experts > MaxSize:
		return usererr.New(key("experts"), "must be at most %d, got %d", MaxSize, m.Experts)
	case m.ExpertHidden <= 0:
		return usererr.New(key("expert_hidden"), "must be a positive integer, got %d", m.ExpertHidden)
	case m.ExpertHidden > MaxSize:
		return usererr.New(key("expert_hidden"), "must be at most %d, got %d", MaxSize, m.ExpertHidden)
	case m.AuxLoss < 0:
		return usererr.New(key("aux_loss"), "must be at least 0, got %g", m.AuxLoss)
	}
	return nil
}

// widest names the largest of the sizes that multiply into the parameter count: the
// likeliest culprit when that count is out of bounds.
func (c Config) widest() string {
	key, v := "model.d_model", c.DModel
	for _, f := range []struct {
		key string
		v   int
	}{
		{"model.vocab_size", c.VocabSize}, {"model.ffn_hidden", c.FFNHidden},
		{"model.moe.experts", c.MoE.Experts}, {"model.moe.expert_hidden", c.MoE.ExpertHidden},
	} {
		if f.v > v && (c.MoE.Experts > 0 || !strings.HasPrefix(f.key, "model.moe.")) {
			key, v = f.key, f.v
		}
	}
	return key
}

func (c Config) String() string {
	return fmt.Sprintf("L%d C%d H%d/%d F%d T%d V%d E%d", c.NLayers, c.DModel, c.NHeads, c.NKVHeads, c.FFNHidden, c.SeqLen, c.VocabSize, c.MoE.Experts)
}
