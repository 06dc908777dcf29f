package trainer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/hf"
	"github.com/herdml/herd/trainer/model"
)

// ExportFormat names the layout of an export's config.json; bump it when a key changes
// meaning.
//
//	herd-export/1: first version.
const ExportFormat = "herd-export/1"

// ExportConfigFile is the name of an export's ExportConfig, beside checkpoint.ModelFile.
const ExportConfigFile = "config.json"

// ExportConfig is an export's config.json: the model config's keys at the top level (as
// docs/model.md's reference forward takes them), plus what the forward pass needs beyond
// the weights.
type ExportConfig struct {
	model.Config
	Format    string             `json:"format"`     // ExportFormat
	Step      int64              `json:"step"`       // optimizer steps the weights were trained for
	Mult      map[string]float64 `json:"mult"`       // forward multiplier of every tensor, by name (1 where MetaP sets none)
	AttnScale float64            `json:"attn_scale"` // multiplies the attention logits q·k
	MetaP     string             `json:"metap_mode"` // the parametrization that set the multipliers
	// LoRA is set when the export holds a LoRA run's adapters alone, to be applied to the
	// base it names (model/lora.go gives the computation); absent in a merged export.
	LoRA *ExportLoRA `json:"lora,omitempty"`
}

// ExportLoRA describes the adapters of an adapter export.
type ExportLoRA struct {
	Rank       int      `json:"rank"`
	Alpha      float64  `json:"alpha"`       // the adapters' output is scaled by alpha/rank
	Targets    []string `json:"targets"`     // the adapted matrices, by name
	Base       string   `json:"base"`        // init.from of the run
	BaseSHA256 string   `json:"base_sha256"` // sha256 of the base's float32 weights in layout order
}

// Export writes the model for other frameworks into dir (created if needed):
// model.safetensors, every tensor by its docs/model.md name, F32, row-major; and
// config.json, an ExportConfig. The multipliers are the float32 values the forward pass
// uses, written exactly. A LoRA run's export holds its adapters alone and says so in
// config.json (ExportConfig.LoRA); ExportMerged writes a standalone model instead.
func (tr *Trainer) Export(dir string) error {
	m := tr.Model
	ec := tr.exportConfig(len(m.Layout.Tensors))
	if lay := m.Layout; len(lay.Adapters) > 0 {
		l := tr.Cfg.Finetune.LoRA
		ec.LoRA = &ExportLoRA{Rank: l.Rank, Alpha: l.Alpha, Base: tr.Cfg.Init.From, BaseSHA256: tr.baseHash}
		for _, ad := range lay.Adapters {
			ec.LoRA.Targets = append(ec.LoRA.Targets, lay.Tensors[ad.Target].Name)
		}
	}
	return tr.writeExport(dir, ec, tr.snapshot(tr.toHost()).Model)
}

// ExportMerged is Export of the weights with the LoRA adapters merged in (model.Merge):
// the base model's tensors, W + (alpha/rank)·B·A for every adapted W, and no adapters.
// Without adapters it is Export.
func (tr *Trainer) ExportMerged(dir string) error {
	if len(tr.Model.Layout.Adapters) == 0 {
		return tr.Export(dir)
	}
	base := tr.merged()
	return tr.writeExport(dir, tr.exportConfig(len(base)), base)
}

// exportConfig is the config.json of an export of the first n tensors of the layout.
func (tr *Trainer) exportConfig(n int) ExportConfig {
	m := tr.Model
	ec := ExportConfig{
		Config: m.Cfg, Format: ExportFormat, Step: tr.step,
		Mult: map[string]float64{}, AttnScale: float64(m.AttnScale), MetaP: tr.Table.Mode,
	}
	ec.Preset = ""
	for i, t := range m.Layout.Tensors[:n] {
		ec.Mult[t.Name] = float64(m.Mult[i])
	}
	return ec
}

// writeExport writes config.json (ec) and model.safetensors (tensors) into dir.
func (tr *Trainer) writeExport(dir string, ec ExportConfig, tensors []checkpoint.Tensor) error {
	js, err := json.MarshalIndent(ec, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding config.json: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, checkpoint.ModelFile))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	meta := map[string]string{"format": ExportFormat, "step": fmt.Sprint(tr.step)}
	if err := checkpoint.WriteSafetensors(f, meta, tensors); err != nil {
		f.Close()
		return fmt.Errorf("export: writing %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ExportConfigFile), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// ExportHF writes the model into dir as a Hugging Face LlamaForCausalLM, or a
// Llama4ForCausalLM if it has experts (hf.Write): config.json and model.safetensors that
// transformers loads, with the forward multipliers and attention scale folded into the
// weights. A model neither can express is a user error naming the key.
//
// A LoRA run's weights are written merged (ExportMerged's): the Llama format has no place
// for herd's adapters.
func (tr *Trainer) ExportHF(dir string) error {
	m := tr.Model
	w := tr.snapshot(tr.toHost()).Model
	if len(m.Layout.Adapters) > 0 {
		w = tr.merged()
	}
	return hf.Write(dir, m.Cfg, w, m.Mult[:len(w)], m.AttnScale)
}
