package metap

import (
	"fmt"
	"path"
	"strings"

	"github.com/herdml/herd/internal/usererr"
)

// Plan returns the table for the target model whose tensors are listed, from hyperparameters
// hp tuned on the base shape. Zero fields of base are filled first from cfg.Base, then from
// the target (see fillBase), so a trainer normally passes Shape{}. Errors in cfg or hp are
// user errors naming the config key.
func Plan(cfg Config, base, target Shape, hp Hyper, tensors []Tensor) (Table, error) {
	if err := cfg.Validate(); err != nil {
		return Table{}, err
	}
	if err := hp.validate(); err != nil {
		return Table{}, err
	}
	if err := target.validate(); err != nil {
		return Table{}, err
	}
	r := newRatios(cfg, fillBase(base, cfg.Base, target), target)
	t := Table{Mode: cfg.Mode, Entries: make([]Entry, len(tensors))}
	for i, ten := range tensors {
		e, err := spEntry(ten, hp, factor(cfg.InputMult), factor(cfg.ReadoutMult))
		if err != nil {
			return Table{}, err
		}
		if cfg.Mode != "sp" {
			if err := r.apply(&e, cfg.Mode == "metap"); err != nil {
				return Table{}, err
			}
		}
		t.Entries[i] = e
	}
	if cfg.Mode != "sp" {
		t.AttnScale = r.attnScale()
	}
	if err := applyOverrides(t.Entries, cfg.Overrides); err != nil {
		return Table{}, err
	}
	return t, nil
}

// spEntry is the standard parametrization: every tensor gets the base values. Matrices,
// the embedding included, decay with the base weight decay, as nanoGPT and CompleteP's
// reference implementation do; RMSNorm gains start at 1 and never decay, since decaying a
// gain pulls it towards 0 rather than towards its init.
//
// The input multiplier (metap.input_mult) is a base value too, tuned on the proxy and the
// same at every width and depth, in every mode: [TP5]'s tunable input multiplier
// (microsoft/mup's examples call it input_mult), the embedding multiplier of Cerebras-GPT
// (Dey et al. 2023) and of [CompleteP]'s reference code (mup_input_alpha), MiniCPM's
// scale_emb (Hu et al. 2024). It scales the
// embedding's (and the patch projection's) output, so it sets how large the embedding is
// in the residual stream against the blocks' outputs, while the embedding's own Adam
// updates stay the same relative to its values. Under [CompleteP] the sum of L branches
// scaled by 1/L starts at Θ(1/√L), so when the blocks' init outputs are as large as the
// embedding's (as with σ everywhere), the stream's init part shrinks with depth at the
// shapes a proxy uses; a larger embedding makes it flat in depth from the first step.
//
// The readout multiplier (metap.readout_mult) is [TP5]'s tunable output multiplier, the
// other base value of the forward pass: it sets the logits' scale against the readout's
// updates (under Adam, the same as the readout's init and LR both multiplied by it, up
// to eps). mup and metap divide it by m at larger widths, as they divide 1.
func spEntry(t Tensor, hp Hyper, inputMult, readoutMult float64) (Entry, error) {
	e := Entry{Tensor: t, InitStd: hp.InitStd, LR: hp.LR, WeightDecay: hp.WeightDecay, Eps: hp.Eps, Mult: 1}
	switch t.Class {
	case Gain:
		e.InitStd, e.WeightDecay = 0, 0
	case Embedding, Patch:
		e.Mult = inputMult
	case Readout:
		e.Mult = readoutMult
	case Hidden, Expert, Router:
	case LoRAA, LoRAB:
		loraEntry(&e)
	default:
		return Entry{}, fmt.Errorf("metap: tensor %s has unknown class %q", t.Name, t.Class)
	}
	return e, nil
}

// applyOverrides multiplies LR and InitStd of every entry whose name matches an override's
// glob. Matching is path.Match on the whole name; names contain no '/', so `*` matches any
// run of characters, dots included ("layers.*.w2" matches "layers.3.moe.experts.w2").
// Every matching override applies, in order, so factors multiply. An override that matches
// no tensor is an error: it is almost always a typo.
func applyOverrides(entries []Entry, overrides []Override) error {
	for i, o := range overrides {
		lr, init := factor(o.LRMult), factor(o.InitMult)
		matched := false
		for j := range entries {
			if ok, _ := path.Match(o.Match, entries[j].Name); !ok { // Validate checked the pattern
				continue
			}
			matched = true
			entries[j].LR *= lr
			entries[j].InitStd *= init
		}
		if !matched && len(entries) > 0 {
			return usererr.New(fmt.Sprintf("metap.overrides[%d].match", i), "%q matches no tensor; names look like %s",
				o.Match, exampleNames(entries))
		}
	}
	return nil
}

// factor reads an override multiplier, where 0 (the YAML default) means 1.
func factor(f float64) float64 {
	if f == 0 {
		return 1
	}
	return f
}

// exampleNames lists a few tensor names for an error message.
func exampleNames(entries []Entry) string {
	var names []string
	for i := 0; i < len(entries) && len(names) < 4; i += max(1, len(entries)/4) {
		names = append(names, entries[i].Name)
	}
	return strings.Join(names, ", ")
}

// validate checks the base hyperparameters, which come from the run config's train.optim
// and metap.init_std.
func (h Hyper) validate() error {
	switch {
	case !(h.LR > 0):
		return usererr.New("train.optim.lr", "must be positive, got %g", h.LR)
	case !(h.InitStd > 0):
		return usererr.New("metap.init_std", "must be positive, got %g", h.InitStd)
	case !(h.WeightDecay >= 0):
		return usererr.New("train.optim.weight_decay", "must be at least 0, got %g", h.WeightDecay)
	case !(h.Eps >= 0):
		return usererr.New("train.optim.eps", "must be at least 0, got %g", h.Eps)
	}
	return nil
}

// validate checks the target shape, which comes from an already validated model config;
// a bad one is the caller's bug, not the user's.
func (s Shape) validate() error {
	if s.DModel <= 0 || s.NLayers <= 0 || s.NHeads <= 0 || s.FFNHidden < 0 || s.ExpertHidden < 0 || s.Experts < 0 ||
		s.BatchTokens <= 0 || !(s.TrainTokens > 0) {
		return fmt.Errorf("metap: invalid target shape %+v", s)
	}
	return nil
}
