package trainer

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/model"
)

// IsExport reports whether dir holds an export's ExportConfigFile, as opposed to a
// checkpoint or run folder, which never do.
func IsExport(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ExportConfigFile))
	return err == nil
}

// LoadExport reads the export folder dir, config.json and model.safetensors as Export
// writes them, into a model on the CPU with the export's forward multipliers and attention
// scale: the forward pass of the model that was exported, for inference (no optimizer, no
// data). A config of another format, a tensor missing, extra or of another shape, and a
// multiplier missing are user errors naming the file and the tensor.
func LoadExport(dir string) (*model.Model[float32], error) {
	cfgPath := filepath.Join(dir, ExportConfigFile)
	js, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, usererr.New(cfgPath, "unreadable export: %v", err)
	}
	var ec ExportConfig
	if err := json.Unmarshal(js, &ec); err != nil {
		return nil, usererr.New(cfgPath, "unreadable export config: %v", err)
	}
	if ec.Format != ExportFormat {
		return nil, usererr.New(cfgPath, "format %q; this herd reads %s exports (written by herd export)", ec.Format, ExportFormat)
	}
	if ec.LoRA != nil {
		return nil, usererr.New(cfgPath, "holds LoRA adapters only (for base %s): export the checkpoint with herd export --merge for a standalone model", ec.LoRA.Base)
	}
	if err := ec.Config.Validate(); err != nil {
		return nil, usererr.New(cfgPath, "the export's model config is not valid for this herd: %v", err)
	}
	be := device.CPU[float32]()
	m := model.New[float32](ec.Config, be, 1)
	m.AttnScale = float32(ec.AttnScale)
	params := kernels.ToHost(be, m.Params)
	var tensors []checkpoint.Tensor
	for i, t := range m.Layout.Tensors {
		s, ok := ec.Mult[t.Name]
		if !ok {
			return nil, usererr.New(cfgPath, "mult: no multiplier for tensor %s", t.Name)
		}
		m.Mult[i] = float32(s)
		tensors = append(tensors, checkpoint.Tensor{Name: t.Name, Shape: t.Shape, Data: params[t.Offset : t.Offset+t.Size()]})
	}
	wPath := filepath.Join(dir, checkpoint.ModelFile)
	f, err := os.Open(wPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usererr.New(wPath, "missing: an export holds config.json and %s", checkpoint.ModelFile)
	}
	if err != nil {
		return nil, usererr.New(wPath, "unreadable export: %v", err)
	}
	defer f.Close()
	if _, err := checkpoint.ReadSafetensors(f, tensors); err != nil {
		return nil, usererr.New(wPath, "does not hold this model's weights: %v", err)
	}
	kernels.Upload(be, m.Params, params)
	return m, nil
}
