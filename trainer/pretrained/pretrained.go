// Package pretrained reads the weights a fine-tuning run starts from (init.from): a herd
// checkpoint folder (or a run folder, for its newest valid checkpoint), a `herd export`
// folder, or a Hugging Face Llama folder (package hf). Only weights are taken: the run's
// optimizer, schedule and data order start afresh, and its model config must be the
// source's, so that every tensor has a home of the same shape.
package pretrained

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/hf"
	"github.com/herdml/herd/trainer/model"
)

// exportPrefix starts the "format" of a herd export's config.json (trainer.ExportFormat).
const exportPrefix = "herd-export/"

// kind is what a source folder holds.
type kind int

const (
	herdCheckpoint kind = iota
	herdExport
	huggingFace
)

// classify tells the three kinds of source apart by their config.json: a Hugging Face
// folder names its architectures, a herd export its format; a checkpoint has none.
func classify(path string) (kind, []byte) {
	js, err := os.ReadFile(filepath.Join(path, hf.ConfigFile))
	if err != nil {
		return herdCheckpoint, nil
	}
	if hf.IsFolder(path) {
		return huggingFace, js
	}
	var c struct {
		Format string `json:"format"`
	}
	if json.Unmarshal(js, &c) == nil && strings.HasPrefix(c.Format, exportPrefix) {
		return herdExport, js
	}
	return herdCheckpoint, nil
}

// ModelConfig returns the model config of the source at path. Errors are user errors
// naming the file at fault.
func ModelConfig(path string) (model.Config, error) {
	k, js := classify(path)
	switch k {
	case huggingFace:
		cfg, _, err := hf.ReadConfig(path)
		return cfg, err
	case herdExport:
		var cfg model.Config // the export's model keys are at the top level of config.json
		if err := json.Unmarshal(js, &cfg); err != nil {
			return cfg, usererr.New(filepath.Join(path, hf.ConfigFile), "unreadable herd export config: %v", err)
		}
		return cfg, nil
	}
	store, name, err := find(path)
	if err != nil {
		return model.Config{}, err
	}
	st, err := checkpoint.ReadState(store, name)
	if err != nil {
		return model.Config{}, err
	}
	var run struct {
		Model model.Config `json:"model"`
	}
	if err := json.Unmarshal(st.Config, &run); err != nil {
		return model.Config{}, usererr.New(storage.Join(fmt.Sprint(store), name, checkpoint.StateFile), "unreadable checkpoint config: %v", err)
	}
	// The shape, not the preset that named it: a run from init.from names no preset.
	run.Model.Preset = ""
	return run.Model, nil
}

// find locates the checkpoint path names; a local source that is no folder is a user
// error. In an object store (s3://) only herd checkpoints are read.
func find(path string) (checkpoint.Storage, string, error) {
	if fi, err := os.Stat(path); !storage.IsURL(path) && (err != nil || !fi.IsDir()) {
		return nil, "", usererr.New(path, "init.from: not a folder: name a herd checkpoint (runs/x/step-00000300), a run folder, a herd export or a Hugging Face Llama folder")
	}
	store, name, _, err := checkpoint.Find(path) // a damaged newer checkpoint is skipped, as herd eval does
	return store, name, err
}

// Check refuses a run whose model config contradicts the source's: every key but seq_len
// (the training sequence length, which weights do not fix) and preset must be equal. The
// error names the key and both values.
func Check(run, source model.Config, from string) error {
	run.SeqLen, source.SeqLen = 0, 0
	run.Preset, source.Preset = "", ""
	return diff(reflect.ValueOf(run), reflect.ValueOf(source), "model", from)
}

func diff(a, b reflect.Value, key, from string) error {
	if a.Kind() == reflect.Struct {
		for i := range a.NumField() {
			name, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("yaml"), ",")
			if err := diff(a.Field(i), b.Field(i), key+"."+name, from); err != nil {
				return err
			}
		}
		return nil
	}
	if !a.Equal(b) {
		return usererr.New(key, "is %v, but init.from %s has %v: leave the model keys out to take the source's, or start from another source", a, from, b)
	}
	return nil
}

// Load reads the source's weights into tensors, the model's by herd name
// (model.NewLayout order, shapes of the run's config, which Check has compared with the
// source's). A tensor missing, extra or of another shape is a user error naming it and
// the file.
func Load(path string, tensors []checkpoint.Tensor) error {
	k, _ := classify(path)
	switch k {
	case huggingFace:
		_, src, err := hf.Read(path)
		if err != nil {
			return err
		}
		return fill(tensors, src, path)
	case herdExport:
		where := filepath.Join(path, checkpoint.ModelFile)
		f, err := os.Open(where)
		if err != nil {
			return usererr.New(where, "cannot read the export's weights: %v", err)
		}
		defer f.Close()
		if _, err := checkpoint.ReadSafetensors(f, tensors); err != nil {
			return usererr.New(where, "%v", err)
		}
		return nil
	}
	store, name, err := find(path)
	if err != nil {
		return err
	}
	return checkpoint.LoadModel(store, name, tensors)
}

// fill copies src into dst by name; both come from layouts of the same config.
func fill(dst, src []checkpoint.Tensor, from string) error {
	byName := map[string]checkpoint.Tensor{}
	for _, t := range src {
		byName[t.Name] = t
	}
	for _, t := range dst {
		s, ok := byName[t.Name]
		if !ok || !reflect.DeepEqual(s.Shape, t.Shape) {
			return usererr.New(from, "tensor %s: missing, or not of shape %v", t.Name, t.Shape)
		}
		copy(t.Data, s.Data)
	}
	if len(src) != len(dst) {
		return fmt.Errorf("pretrained: %s holds %d tensors, the model %d", from, len(src), len(dst))
	}
	return nil
}
