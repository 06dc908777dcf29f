package trainer

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/trainer/model"
)

// Open loads the checkpoint folder path with the configuration it was trained with (kept
// in its state.json), for evaluation and export: no training data is opened, and Step
// refuses to run. evalSpec names the data Eval reads (same forms as data.eval; "" = none).
// The checkpoint is refused if the MetaP rules of this herd give another table than the
// one it was trained with, since its forward multipliers would differ.
func Open(path, evalSpec string, opts Options) (*Trainer, error) {
	store, name := checkpoint.Dir{Root: filepath.Dir(path)}, filepath.Base(path)
	st, err := checkpoint.ReadState(store, name)
	if err != nil {
		return nil, err
	}
	where := filepath.Join(path, checkpoint.StateFile)
	var cfg config.Run
	if err := json.Unmarshal(st.Config, &cfg); err != nil {
		return nil, usererr.New(where, "unreadable checkpoint: config: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, usererr.New(where, "the checkpoint's config is not valid for this herd: %v", err)
	}
	cfg.Data.Eval = evalSpec
	tr, err := build(cfg, opts)
	if err != nil {
		return nil, err
	}
	tr.store = store
	if err := tr.openData(false); err != nil {
		return nil, err
	}
	if err := tr.load(store, name, st.ConfigHash); err != nil {
		tr.Close()
		return nil, err
	}
	return tr, nil
}

// Close releases the data sources' files.
func (tr *Trainer) Close() error {
	var first error
	for _, s := range []any{tr.train, tr.eval} {
		if c, ok := s.(io.Closer); ok {
			if err := c.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// ExportConfig is the config.json of an export: the model config's keys at the top level,
// plus what the forward pass needs beyond the weights (docs/model.md).
type ExportConfig struct {
	model.Config
	Mult      map[string]float64 `json:"mult"`       // forward multiplier of every tensor (exact float32 values)
	AttnScale float64            `json:"attn_scale"` // multiplies the attention logits q·k
	Step      int64              `json:"step"`       // optimizer steps the weights were trained for
}

// Export writes the model as dir/model.safetensors (the checkpoint's weights, same names,
// shapes and F32 layout) and dir/config.json (ExportConfig), creating dir.
func (tr *Trainer) Export(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	weights := tr.snapshot().Model
	meta := map[string]string{"format": "herd", "step": strconv.FormatInt(tr.step, 10)}
	if err := writeFile(filepath.Join(dir, checkpoint.ModelFile), func(w io.Writer) error {
		return checkpoint.WriteSafetensors(w, meta, weights)
	}); err != nil {
		return err
	}
	ec := ExportConfig{Config: tr.Cfg.Model, Mult: map[string]float64{}, AttnScale: float64(tr.Model.AttnScale), Step: tr.step}
	ec.Preset = ""
	for i, t := range tr.Model.Layout.Tensors {
		ec.Mult[t.Name] = float64(tr.Model.Mult[i])
	}
	js, err := json.MarshalIndent(ec, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "config.json"), func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	})
}

// writeFile creates path and fills it with write, syncing it to disk.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
