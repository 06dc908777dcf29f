package metap

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strings"

	"github.com/herdml/herd/internal/usererr"
)

// Shape is what the rules need to know of a model and of its run.
type Shape struct {
	DModel, NLayers, NHeads, FFNHidden, ExpertHidden, Experts int
	BatchTokens                                               int     // tokens per optimizer step (global_batch * seq_len)
	TrainTokens                                               float64 // tokens over the whole run (steps * BatchTokens)
}

// Hyper holds the base hyperparameters, tuned on the base shape.
type Hyper struct{ LR, InitStd, WeightDecay, Eps float64 }

// Tensor is one parameter as the trainer lists it (model.Layout): its export name, its
// row-major shape ([out, in] for matrices, [experts, out, in] for expert stacks) and its role.
type Tensor struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	Class Class  `json:"class"`
}

// Entry is what the trainer uses for one tensor. InitStd is the standard deviation of its
// normal init; gains start at exactly 1 and have InitStd 0. LR is the peak learning rate
// (the schedule multiplies it), WeightDecay the decoupled decay rate (the step decays by
// LR·WeightDecay, as torch.optim.AdamW), Eps Adam's epsilon, and Mult the forward multiplier:
// the tensor's matmul output is scaled by it.
type Entry struct {
	Tensor
	InitStd     float64 `json:"init_std"`
	LR          float64 `json:"lr"`
	WeightDecay float64 `json:"weight_decay"`
	Eps         float64 `json:"eps"`
	Mult        float64 `json:"mult"`
}

// Table is the per-tensor plan for one target model, in the trainer's tensor order.
// AttnScale multiplies the attention logits q·k; 0 means the model's default 1/sqrt(head_dim).
type Table struct {
	Mode      string  `json:"mode"`
	Entries   []Entry `json:"entries"`
	AttnScale float64 `json:"attn_scale"`
}

// Override multiplies the rules' learning rate and init std of every tensor whose name
// matches a glob, for per-layer control beyond the rules. A factor of 0 (or absent) means 1:
// lr_mult 0 does not freeze (it predates freezing, and configs rely on it meaning 1);
// frozen does, and says so.
type Override struct {
	Match    string  `yaml:"match" json:"match"`         // glob over tensor names, e.g. "layers.*.attn.*"
	LRMult   float64 `yaml:"lr_mult" json:"lr_mult"`     // learning-rate factor; 0 = 1; >= 0
	InitMult float64 `yaml:"init_mult" json:"init_mult"` // init-std factor; 0 = 1; >= 0
	// Frozen keeps the matching tensors at their initial (or init.from) values: the trainer
	// gives them no gradient and no optimizer state. The table's values for them are then
	// unused. omitempty keeps the hash of configs written before it.
	Frozen bool `yaml:"frozen" json:"frozen,omitempty"`
}

// Base is the proxy shape the hyperparameters were tuned on; 0 means the target's value, so
// that nothing transfers along that axis.
type Base struct {
	DModel      int     `yaml:"d_model" json:"d_model"`           // residual width of the proxy
	NLayers     int     `yaml:"n_layers" json:"n_layers"`         // blocks of the proxy
	BatchTokens int     `yaml:"batch_tokens" json:"batch_tokens"` // tokens per optimizer step on the proxy
	TrainTokens float64 `yaml:"train_tokens" json:"train_tokens"` // tokens over the proxy's whole run
}

// Config is the `metap:` section of a run config.
type Config struct {
	Mode            string     `yaml:"mode" json:"mode"`                           // sp | mup | metap
	Base            Base       `yaml:"base" json:"base"`                           // the proxy the hyperparameters were tuned on
	InitStd         float64    `yaml:"init_std" json:"init_std"`                   // base init std of matrices; > 0
	DepthAlpha      float64    `yaml:"depth_alpha" json:"depth_alpha"`             // residual branches scale as (L/L_base)^-alpha; in [0.5, 1]
	HorizonExponent float64    `yaml:"horizon_exponent" json:"horizon_exponent"`   // LR scales as (D/D_base)^-exponent; in [0, 1]
	InputMult       float64    `yaml:"input_mult" json:"input_mult,omitempty"`     // forward multiplier of the embedding and patch projection; >= 0, 0 = 1
	ReadoutMult     float64    `yaml:"readout_mult" json:"readout_mult,omitempty"` // base forward multiplier of the LM head (mup and metap divide it by m); >= 0, 0 = 1
	Overrides       []Override `yaml:"overrides" json:"overrides"`                 // per-tensor multipliers, applied in order
	// Ablate switches rules back to sp's values, one name per rule (Ablations), to measure
	// what each costs or buys. omitempty keeps the hash of configs written before it.
	Ablate []string `yaml:"ablate" json:"ablate,omitempty"`
}

// Modes are the parametrizations Plan knows, in the order the docs present them.
var Modes = []string{"sp", "mup", "metap"}

// DefaultConfig is the `metap:` section a run config starts from: the full MetaP rules
// with CompleteP's α = 1 and the horizon exponent Bjorck et al. (2025) fit for AdamW.
func DefaultConfig() Config {
	return Config{Mode: "metap", InitStd: 0.02, DepthAlpha: 1, HorizonExponent: 0.3}
}

// Validate checks every key. Errors are user errors naming the key under `metap.` and
// what is allowed there.
func (c Config) Validate() error {
	if !slices.Contains(Modes, c.Mode) {
		return usererr.New("metap.mode", "unknown mode %q; allowed: %s", c.Mode, strings.Join(Modes, ", "))
	}
	for _, f := range []struct {
		key string
		v   float64
	}{
		{"d_model", float64(c.Base.DModel)}, {"n_layers", float64(c.Base.NLayers)},
		{"batch_tokens", float64(c.Base.BatchTokens)}, {"train_tokens", c.Base.TrainTokens},
	} {
		if !(f.v >= 0) || math.IsInf(f.v, 0) {
			return usererr.New("metap.base."+f.key, "must be a positive size of the proxy (or 0 = the target's), got %g", f.v)
		}
	}
	if !(c.InitStd > 0) || math.IsInf(c.InitStd, 0) {
		return usererr.New("metap.init_std", "must be a positive number, got %g", c.InitStd)
	}
	if !(c.InputMult >= 0) || math.IsInf(c.InputMult, 0) {
		return usererr.New("metap.input_mult", "must be a finite number at least 0 (0 = 1), got %g", c.InputMult)
	}
	if !(c.ReadoutMult >= 0) || math.IsInf(c.ReadoutMult, 0) {
		return usererr.New("metap.readout_mult", "must be a finite number at least 0 (0 = 1), got %g", c.ReadoutMult)
	}
	if !(c.DepthAlpha >= 0.5 && c.DepthAlpha <= 1) {
		return usererr.New("metap.depth_alpha", "must be in [0.5, 1] (0.5 as Yang et al., 1 = CompleteP), got %g", c.DepthAlpha)
	}
	if !(c.HorizonExponent >= 0 && c.HorizonExponent <= 1) {
		return usererr.New("metap.horizon_exponent", "must be in [0, 1] (0 = no horizon rule; 0.3 fits AdamW), got %g", c.HorizonExponent)
	}
	if err := validateAblate(c.Mode, c.Ablate); err != nil {
		return err
	}
	for i, o := range c.Overrides {
		key := fmt.Sprintf("metap.overrides[%d]", i)
		if _, err := path.Match(o.Match, ""); o.Match == "" || err != nil {
			return usererr.New(key+".match", "want a glob over tensor names such as \"layers.*.attn.*\", got %q", o.Match)
		}
		if !(o.LRMult >= 0) || math.IsInf(o.LRMult, 0) {
			return usererr.New(key+".lr_mult", "must be a finite number at least 0 (0 = 1), got %g", o.LRMult)
		}
		if !(o.InitMult >= 0) || math.IsInf(o.InitMult, 0) {
			return usererr.New(key+".init_mult", "must be a finite number at least 0 (0 = 1), got %g", o.InitMult)
		}
	}
	return nil
}
