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
}

// Export writes the model for other frameworks into dir (created if needed):
// model.safetensors, every tensor by its docs/model.md name, F32, row-major; and
// config.json, an ExportConfig. The multipliers are the float32 values the forward pass
// uses, written exactly.
func (tr *Trainer) Export(dir string) error {
	m := tr.Model
	ec := ExportConfig{
		Config: m.Cfg, Format: ExportFormat, Step: tr.step,
		Mult: map[string]float64{}, AttnScale: float64(m.AttnScale), MetaP: tr.Table.Mode,
	}
	ec.Preset = ""
	for i, t := range m.Layout.Tensors {
		ec.Mult[t.Name] = float64(m.Mult[i])
	}
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
	if err := checkpoint.WriteSafetensors(f, meta, tr.snapshot(tr.toHost()).Model); err != nil {
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
func (tr *Trainer) ExportHF(dir string) error {
	m := tr.Model
	return hf.Write(dir, m.Cfg, tr.snapshot(tr.toHost()).Model, m.Mult, m.AttnScale)
}
