package trainer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
)

// fineTune is openYAML as a fine-tuning run from source under another name: the model
// keys come from the source (LoadFrom's layer), so the ones openYAML sets agree with it.
func fineTune(t *testing.T, source, dir string, sets ...string) config.Run {
	t.Helper()
	sets = append([]string{"name=ft", "init.from=" + source, "train.checkpoint.dir=" + dir}, sets...)
	cfg, err := config.Parse("open.yaml", []byte(openYAML), sets)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestInitFromCheckpoint: a run started from a checkpoint holds exactly its weights, at
// step 0 with zero AdamW moments; after training, resuming the fine-tune run continues
// it (its own checkpoint, not the source).
func TestInitFromCheckpoint(t *testing.T) {
	src, ckpt := trainedCheckpoint(t)
	defer src.Close()
	want := slices.Clone(kernels.ToHost(src.opts.Backend, src.Model.Params))

	dir := t.TempDir()
	ft, err := New(fineTune(t, ckpt, dir), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := kernels.ToHost(ft.opts.Backend, ft.Model.Params)
	if !slices.Equal(got, want) {
		t.Fatal("the fine-tune run does not start from the checkpoint's weights bit for bit")
	}
	h := ft.toHost()
	if ft.StepCount() != 0 || ft.opt.T != 0 || slices.ContainsFunc(h.m, nonzero) || slices.ContainsFunc(h.v, nonzero) {
		t.Fatalf("fine-tune starts at step %d, adam_t %d: want step 0 and a fresh optimizer", ft.StepCount(), ft.opt.T)
	}
	if _, err := ft.Run(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	trained := slices.Clone(kernels.ToHost(ft.opts.Backend, ft.Model.Params))
	ft.Close()

	again, err := New(fineTune(t, ckpt, dir), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	name, err := again.Resume("")
	if err != nil {
		t.Fatal(err)
	}
	if name != "step-00000001" || again.StepCount() != 1 || !slices.Equal(kernels.ToHost(again.opts.Backend, again.Model.Params), trained) {
		t.Fatalf("resume loaded %q at step %d; want the fine-tune's step-00000001 and its weights", name, again.StepCount())
	}
}

func nonzero(v float32) bool { return v != 0 }

// TestInitFromExportAndRun: a herd export and a run folder are sources too, giving the
// same weights as the checkpoint.
func TestInitFromExportAndRun(t *testing.T) {
	src, ckpt := trainedCheckpoint(t)
	defer src.Close()
	want := slices.Clone(kernels.ToHost(src.opts.Backend, src.Model.Params))
	export := filepath.Join(t.TempDir(), "export")
	if err := src.Export(export); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{export, filepath.Dir(ckpt)} {
		ft, err := New(fineTune(t, from, t.TempDir()), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(kernels.ToHost(ft.opts.Backend, ft.Model.Params), want) {
			t.Errorf("init.from %s: weights differ from the source's", from)
		}
		ft.Close()
	}
}

// TestInitFromRefusesAnotherModel: a model key that contradicts the source is a user
// error naming the key and both values; seq_len may differ.
func TestInitFromRefusesAnotherModel(t *testing.T) {
	src, ckpt := trainedCheckpoint(t)
	defer src.Close()
	_, err := New(fineTune(t, ckpt, t.TempDir(), "model.d_model=64"), Options{})
	if !usererr.Is(err) || !strings.Contains(err.Error(), "model.d_model: is 64, but init.from") || !strings.Contains(err.Error(), "has 32") {
		t.Fatalf("New: %v; want a user error naming model.d_model, 64 and 32", err)
	}
	ft, err := New(fineTune(t, ckpt, t.TempDir(), "model.seq_len=16"), Options{})
	if err != nil {
		t.Fatalf("another seq_len: %v", err)
	}
	ft.Close()
}

// TestInitFromRefusesAMissingTensor: a source whose weights lack a tensor of the model is
// a user error naming the tensor and the file.
func TestInitFromRefusesAMissingTensor(t *testing.T) {
	src, _ := trainedCheckpoint(t)
	defer src.Close()
	export := filepath.Join(t.TempDir(), "export")
	if err := src.Export(export); err != nil {
		t.Fatal(err)
	}
	tensors := src.snapshot(src.toHost()).Model
	f, err := os.Create(filepath.Join(export, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.WriteSafetensors(f, nil, tensors[:len(tensors)-1]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = New(fineTune(t, export, t.TempDir()), Options{})
	if !usererr.Is(err) || !strings.Contains(err.Error(), "model.safetensors: safetensors: tensor output.weight missing") {
		t.Fatalf("New: %v; want a user error naming output.weight", err)
	}
}
