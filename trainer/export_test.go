package trainer

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/config"
)

// openYAML trains in a second; MetaP from a narrower, shallower base makes the forward
// multipliers differ from 1, so that exporting them is tested.
const openYAML = `
name: open
model:
  vocab_size: 256
  d_model: 32
  n_layers: 2
  n_heads: 2
  n_kv_heads: 1
  ffn_hidden: 64
  seq_len: 32
  moe: {experts: 2, top_k: 1, shared_expert: true, every: 2, expert_hidden: 32}
data: {train: "${GOROOT}/src/errors/*.go", eval: "${GOROOT}/src/io/pipe.go"}
train:
  steps: 2
  global_batch: 4
  micro_batch: 2
  checkpoint: {every: 0, keep: 1}
  eval: {every: 0, batches: 3}
metap: {mode: metap, base: {d_model: 16, n_layers: 1}}
`

// trainedCheckpoint trains openYAML and returns the trainer and its final checkpoint.
func trainedCheckpoint(t *testing.T) (*Trainer, string) {
	t.Helper()
	cfg, err := config.Parse("open.yaml", []byte(openYAML), []string{"train.checkpoint.dir=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := tr.Run(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return tr, filepath.Join(tr.CheckpointDir(), st.Checkpoint)
}

// TestOpenEvaluatesLikeTheTrainer: a checkpoint opened for evaluation holds the trained
// weights and multipliers and gives the trainer's own eval loss, bit for bit.
func TestOpenEvaluatesLikeTheTrainer(t *testing.T) {
	tr, ckpt := trainedCheckpoint(t)
	want, err := tr.Eval(3)
	if err != nil {
		t.Fatal(err)
	}
	op, err := Open(ckpt, tr.Cfg.Data.Eval, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := op.Eval(3)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("opened checkpoint evaluates to %+v, the trainer to %+v", got, want)
	}
	if op.StepCount() != 2 {
		t.Errorf("step %d, want 2", op.StepCount())
	}
}

func TestOpenRefusesAnUnreadableCheckpoint(t *testing.T) {
	_, ckpt := trainedCheckpoint(t)
	if _, err := Open(filepath.Join(t.TempDir(), "step-00000002"), "", Options{}); !usererr.Is(err) {
		t.Errorf("missing checkpoint: got %v, want a user error", err)
	}
	model := filepath.Join(ckpt, checkpoint.ModelFile)
	if err := os.Truncate(model, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ckpt, "", Options{}); !usererr.Is(err) || !strings.Contains(err.Error(), model) {
		t.Errorf("truncated weights: got %v, want a user error naming %s", err, model)
	}
}

// TestExport reads an export back: every tensor by name with the trained values, and a
// config.json whose model keys, multipliers and attention scale are the trainer's.
func TestExport(t *testing.T) {
	tr, ckpt := trainedCheckpoint(t)
	op, err := Open(ckpt, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "export")
	if err := op.Export(dir); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lay := tr.Model.Layout
	into := make([]checkpoint.Tensor, len(lay.Tensors))
	for i, x := range lay.Tensors {
		into[i] = checkpoint.Tensor{Name: x.Name, Shape: x.Shape, Data: make([]float32, x.Size())}
	}
	if _, err := checkpoint.ReadSafetensors(f, into); err != nil {
		t.Fatal(err)
	}
	for i, x := range lay.Tensors {
		for j, v := range into[i].Data {
			if w := tr.Model.Params.Host()[x.Offset+j]; v != w {
				t.Fatalf("%s[%d] = %g, trained %g", x.Name, j, v, w)
			}
		}
	}

	js, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ec ExportConfig
	if err := json.Unmarshal(js, &ec); err != nil {
		t.Fatal(err)
	}
	if ec.Format != ExportFormat || ec.Step != 2 || ec.DModel != 32 || ec.MoE.Experts != 2 || float32(ec.AttnScale) != tr.Model.AttnScale {
		t.Errorf("config.json %+v", ec)
	}
	notOne := 0
	for i, x := range lay.Tensors {
		m, ok := ec.Mult[x.Name]
		if !ok || float32(m) != tr.Model.Mult[i] {
			t.Errorf("mult[%s] = %v (present %v), model uses %v", x.Name, m, ok, tr.Model.Mult[i])
		}
		if math.Abs(m-1) > 1e-6 {
			notOne++
		}
	}
	if len(ec.Mult) != len(lay.Tensors) || notOne == 0 {
		t.Errorf("%d multipliers for %d tensors, %d of them not 1; MetaP from a narrower base sets some", len(ec.Mult), len(lay.Tensors), notOne)
	}
}
