package config

import (
	"fmt"
	"math"
	"path"
	"slices"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/metap"
	"github.com/herdml/herd/trainer/model"
)

// Finetune says how a run started from init.from trains its weights: all of them (the
// default), or low-rank adapters on a frozen base.
type Finetune struct {
	LoRA LoRA `yaml:"lora" json:"lora"`
}

// LoRA is finetune.lora: adapters A [rank, in] and B [out, rank] on every matrix a target
// glob matches, the base frozen (model/lora.go; docs/metap.md for their init and LR).
type LoRA struct {
	Rank    int      `yaml:"rank" json:"rank"`       // adapter rank r; default 0 = no adapters (full fine-tuning); 0 to the smallest side of a target
	Alpha   float64  `yaml:"alpha" json:"alpha"`     // the adapter's output is scaled by alpha/rank; default 16; > 0
	Dropout float64  `yaml:"dropout" json:"dropout"` // dropout on the adapter's input in training, deterministic (model/lora.go); default 0; in [0, 1)
	Targets []string `yaml:"targets" json:"targets"` // globs of the matrices to adapt; default PEFT's Llama choice, q and v
}

// defaultLoRA is finetune.lora before a file sets it.
func defaultLoRA() LoRA {
	return LoRA{Alpha: 16, Targets: []string{"layers.*.attn.wq", "layers.*.attn.wv"}}
}

// Layout is the run's parameter layout: the model's (model.NewLayout), with finetune.lora's
// adapters, every base tensor frozen when there are adapters, and the tensors that a
// metap.overrides entry with frozen: true matches frozen too. Its errors are user errors
// naming the key at fault.
func (r Run) Layout() (*model.Layout, error) {
	lay := model.NewLayout(r.Model)
	if l := r.Finetune.LoRA; l.Rank != 0 {
		targets, err := l.targets(lay)
		if err != nil {
			return nil, err
		}
		lay.AddLoRA(targets, l.Rank, l.Alpha, l.Dropout)
	}
	var frozen []string
	for _, o := range r.MetaP.Overrides {
		if o.Frozen {
			frozen = append(frozen, o.Match)
		}
	}
	if len(frozen) > 0 {
		was := map[string]bool{}
		for _, t := range lay.Tensors {
			was[t.Name] = t.Frozen()
		}
		lay.Freeze(func(t model.Tensor) bool {
			for _, g := range frozen {
				if ok, _ := path.Match(g, t.Name); ok {
					return true
				}
			}
			return was[t.Name]
		})
	}
	if lay.Trainable == 0 {
		return nil, usererr.New("metap.overrides", "every tensor is frozen: nothing would train; unfreeze some, or add finetune.lora adapters")
	}
	return lay, nil
}

// targets resolves the target globs to tensor indices, in layout order, each once.
func (l LoRA) targets(lay *model.Layout) ([]int, error) {
	hit := make([]bool, len(lay.Tensors))
	for i, g := range l.Targets {
		key := fmt.Sprintf("finetune.lora.targets[%d]", i)
		if _, err := path.Match(g, ""); g == "" || err != nil {
			return nil, usererr.New(key, "want a glob over tensor names such as \"layers.*.attn.wq\", got %q", g)
		}
		n := 0
		for j, t := range lay.Tensors {
			if ok, _ := path.Match(g, t.Name); !ok {
				continue
			}
			if !model.LoRATarget(t) {
				return nil, usererr.New(key, "%q matches %s (%s, shape %v), which cannot take an adapter: targets are the 2-D matrices of attention (attn.wq/wk/wv/wo), dense feed-forwards (ffn.w1/w3/w2) and shared experts (moe.shared.w1/w3/w2)",
					g, t.Name, t.Class, t.Shape)
			}
			hit[j] = true
			n++
		}
		if n == 0 {
			return nil, usererr.New(key, "%q matches no tensor; matrices are named like layers.0.attn.wq, layers.0.ffn.w1, layers.1.moe.shared.w2", g)
		}
	}
	var out []int
	for j, h := range hit {
		if h {
			if s := lay.Tensors[j].Shape; l.Rank > min(s[0], s[1]) {
				return nil, usererr.New("finetune.lora.rank", "%d is more than the smallest side of %s %v; a rank that large adapts nothing a full update would not", l.Rank, lay.Tensors[j].Name, s)
			}
			out = append(out, j)
		}
	}
	return out, nil
}

// validate checks finetune's keys and how they combine with the rest of the run, and
// the run's Layout when it has adapters or frozen tensors.
func (f Finetune) validate(r Run) error {
	l := f.LoRA
	frozen := slices.ContainsFunc(r.MetaP.Overrides, func(o metap.Override) bool { return o.Frozen })
	switch {
	case l.Rank < 0:
		return usererr.New("finetune.lora.rank", "must be at least 0 (0 = no adapters: full fine-tuning), got %d", l.Rank)
	case l.Rank == 0 && !frozen:
		return nil
	case l.Rank == 0:
	case !(l.Alpha > 0):
		return usererr.New("finetune.lora.alpha", "must be positive (the adapter's output is scaled by alpha/rank), got %g", l.Alpha)
	case !(l.Dropout >= 0 && l.Dropout < 1):
		return usererr.New("finetune.lora.dropout", "must be in [0, 1), got %g", l.Dropout)
	case len(l.Targets) == 0:
		return usererr.New("finetune.lora.targets", "give at least one glob of matrices to adapt, such as \"layers.*.attn.wq\"")
	case r.Init.From == "":
		return usererr.New("finetune.lora", "adapters train on a pretrained base: set init.from to a herd checkpoint, export or Hugging Face folder")
	}
	lay, err := r.Layout()
	if err != nil {
		return err
	}
	if l.Dropout > 0 {
		// The masks are applied through an int32 index over micro_batch·seq_len·in values.
		for _, ad := range lay.Adapters {
			in := lay.Tensors[ad.Target].Shape[1]
			if n := float64(r.Train.MicroBatch) * float64(r.Model.SeqLen) * float64(in); n > math.MaxInt32 {
				return usererr.New("finetune.lora.dropout", "with train.micro_batch × model.seq_len × %d inputs of %s = %.3g values per mask, more than 2^31-1: lower train.micro_batch, or set dropout 0",
					in, lay.Tensors[ad.Target].Name, n)
			}
		}
	}
	return nil
}
