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

// loraSets adapt attention, dense and shared-expert matrices of openYAML's model.
var loraSets = []string{"finetune.lora.rank=4", "finetune.lora.alpha=8", "finetune.lora.dropout=0.25",
	"finetune.lora.targets=[layers.*.attn.wq, layers.*.attn.wv, layers.0.ffn.w2, layers.1.moe.shared.w1]",
	"train.steps=4", "train.checkpoint.every=2", "train.checkpoint.keep=5"}

// loraRun trains a LoRA run on base until step until (resuming its latest checkpoint, if
// any) and returns the trainer, still open.
func loraRun(t *testing.T, base, dir string, until int64, sets ...string) *Trainer {
	t.Helper()
	tr, err := New(fineTune(t, base, dir, append(slices.Clone(loraSets), sets...)...), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Resume(""); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Run(context.Background(), until); err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestLoRATrainsAdaptersOnly: the base stays the source's bit for bit, gradients and
// moments cover the adapters alone, and checkpoints hold the adapters and name the base;
// in fp32 and with the base's GEMMs in FP8.
func TestLoRATrainsAdaptersOnly(t *testing.T) {
	for _, prec := range []string{"fp32", "fp8"} {
		t.Run(prec, func(t *testing.T) { testLoRATrainsAdaptersOnly(t, "train.precision="+prec) })
	}
}

func testLoRATrainsAdaptersOnly(t *testing.T, sets ...string) {
	src, ckpt := trainedCheckpoint(t)
	defer src.Close()
	base := slices.Clone(kernels.ToHost(src.opts.Backend, src.Model.Params))
	tr := loraRun(t, ckpt, t.TempDir(), 2, sets...)
	defer tr.Close()
	lay := tr.Model.Layout
	if got := kernels.ToHost(tr.opts.Backend, tr.Model.Params)[:lay.BaseTotal()]; !slices.Equal(got, base) {
		t.Error("the frozen base changed in training")
	}
	adapters := lay.Total - lay.BaseTotal()
	if tr.Model.Grads.Len() != adapters || tr.opt.M.Len() != adapters || tr.opt.V.Len() != adapters {
		t.Errorf("gradients %d, moments %d and %d values; want the adapters' %d", tr.Model.Grads.Len(), tr.opt.M.Len(), tr.opt.V.Len(), adapters)
	}
	st, err := checkpoint.ReadState(tr.store, checkpoint.Name(2))
	if err != nil {
		t.Fatal(err)
	}
	if st.Base != ckpt || st.BaseSHA256 != tr.baseHash || len(st.BaseSHA256) != 64 {
		t.Errorf("checkpoint names base %q sha256 %q; want %q, %q", st.Base, st.BaseSHA256, ckpt, tr.baseHash)
	}
	for _, s := range tr.snapshot(tr.toHost()).Model {
		if !strings.HasSuffix(s.Name, ".lora_a") && !strings.HasSuffix(s.Name, ".lora_b") {
			t.Errorf("checkpoint holds %s; want adapters only", s.Name)
		}
		if strings.HasSuffix(s.Name, ".lora_b") && !slices.ContainsFunc(s.Data, nonzero) {
			t.Errorf("%s is still zero after training", s.Name)
		}
	}
}

// TestLoRAExactResume: a LoRA run stopped at step 2 and resumed, on one rank or on two,
// ends with the adapters, moments and state of an uninterrupted run, bit for bit.
func TestLoRAExactResume(t *testing.T) {
	src, ckpt := trainedCheckpoint(t)
	defer src.Close()
	whole := t.TempDir()
	tr := loraRun(t, ckpt, whole, 4)
	tr.Close()
	a := fingerprint(t, filepath.Join(whole, "ft", checkpoint.Name(4)))
	for _, ranks := range []string{"parallel.data=1", "parallel.data=2"} {
		parts := t.TempDir()
		loraRun(t, ckpt, parts, 2).Close()
		tr = loraRun(t, ckpt, parts, 4, ranks)
		tr.Close()
		b := fingerprint(t, filepath.Join(parts, "ft", checkpoint.Name(4)))
		for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimFile, checkpoint.StateFile} {
			if a[f] != b[f] {
				t.Errorf("%s: resumed at step 2 with %s %s, uninterrupted %s", f, ranks, b[f], a[f])
			}
		}
	}

	fp8 := t.TempDir() // the FP8 scaling state resumes with the adapters
	loraRun(t, ckpt, fp8, 4, "train.precision=fp8").Close()
	parts := t.TempDir()
	loraRun(t, ckpt, parts, 2, "train.precision=fp8").Close()
	loraRun(t, ckpt, parts, 4, "train.precision=fp8").Close()
	a, b := fingerprint(t, filepath.Join(fp8, "ft", checkpoint.Name(4))), fingerprint(t, filepath.Join(parts, "ft", checkpoint.Name(4)))
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimFile, checkpoint.StateFile} {
		if a[f] != b[f] {
			t.Errorf("fp8: %s: resumed at step 2 %s, uninterrupted %s", f, b[f], a[f])
		}
	}
}

// TestLoRAMergedExport: herd export --merge writes W + (alpha/rank)·B·A for every target,
// bit for bit as float32 computes it (each product rounded, summed over k in order, then
// scaled and added), the other tensors as they are and no adapters; it loads as a plain
// model whose loss is the adapted model's. The plain export holds the adapters alone.
func TestLoRAMergedExport(t *testing.T) {
	src, ckpt := trainedCheckpoint(t)
	defer src.Close()
	tr := loraRun(t, ckpt, t.TempDir(), 2)
	defer tr.Close()
	dir := filepath.Join(t.TempDir(), "merged")
	if err := tr.ExportMerged(dir); err != nil {
		t.Fatal(err)
	}
	m, err := LoadExport(dir)
	if err != nil {
		t.Fatal(err)
	}
	lay, p := tr.Model.Layout, kernels.ToHost(tr.opts.Backend, tr.Model.Params)
	got := m.Params.Host()
	if len(got) != lay.BaseTotal() {
		t.Fatalf("merged export has %d values, the base %d", len(got), lay.BaseTotal())
	}
	want := slices.Clone(p[:lay.BaseTotal()])
	c := float32(8.0 / 4)
	for _, ad := range lay.Adapters {
		w, a, b := lay.Tensors[ad.Target], lay.Tensors[ad.A], lay.Tensors[ad.B]
		out, in, r := w.Shape[0], w.Shape[1], 4
		for i := range out {
			for j := range in {
				var s float32
				for k := range r {
					prod := p[b.Offset+i*r+k] * p[a.Offset+k*in+j]
					s += prod
				}
				scaled := c * s
				want[w.Offset+i*in+j] += scaled
			}
		}
		if slices.Equal(want[w.Offset:w.Offset+w.Size()], p[w.Offset:w.Offset+w.Size()]) {
			t.Errorf("%s: the adapter changed nothing; train longer", w.Name)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("merged value %d is %v, W + c·B·A in float32 is %v", i, got[i], want[i])
		}
	}
	tr.eval.Restore(tr.evalStart)
	if err := tr.eval.Next(&tr.batch); err != nil {
		t.Fatal(err)
	}
	b, T := tr.batch, tr.batch.T // the export's model takes one sequence
	b.B, b.Tokens, b.Targets, b.Mask, b.Pos, b.Doc = 1, b.Tokens[:T], b.Targets[:T], b.Mask[:T], b.Pos[:T], b.Doc[:T]
	adapted, merged := tr.Model.Forward(&b).Loss, m.Forward(&b).Loss
	if d := adapted - merged; d > 1e-5 || d < -1e-5 {
		t.Errorf("merged model's loss %v, adapted model's %v", merged, adapted)
	}

	ft, err := New(fineTune(t, dir, t.TempDir()), Options{}) // a merged export is a source like any other
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kernels.ToHost(ft.opts.Backend, ft.Model.Params), got) {
		t.Error("init.from the merged export does not start from its weights")
	}
	ft.Close()

	_, err = New(fineTune(t, filepath.Join(tr.CheckpointDir(), checkpoint.Name(2)), t.TempDir()), Options{})
	if !usererr.Is(err) || !strings.Contains(err.Error(), "export --merge") {
		t.Errorf("init.from a LoRA checkpoint: %v; want a user error pointing at export --merge", err)
	}

	plain := filepath.Join(t.TempDir(), "adapters")
	if err := tr.Export(plain); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadExport(plain); !usererr.Is(err) || !strings.Contains(err.Error(), "--merge") {
		t.Errorf("loading an adapter export: %v; want a user error pointing at --merge", err)
	}
}

// TestLoRARefusesAnotherBase: resuming a LoRA run whose init.from now holds other weights
// is a user error naming both hashes; so is opening its checkpoint.
func TestLoRARefusesAnotherBase(t *testing.T) {
	src, _ := trainedCheckpoint(t)
	defer src.Close()
	export := filepath.Join(t.TempDir(), "base")
	if err := src.Export(export); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := loraRun(t, export, dir, 2)
	was := tr.baseHash
	tr.Close()

	h := src.toHost()
	h.params[0]++
	f, err := os.Create(filepath.Join(export, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.WriteSafetensors(f, nil, src.snapshot(h).Model); err != nil {
		t.Fatal(err)
	}
	f.Close()
	h.params[0]--

	again, err := New(fineTune(t, export, dir, loraSets...), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	_, err = again.Resume("")
	if !usererr.Is(err) || !strings.Contains(err.Error(), was[:16]) || !strings.Contains(err.Error(), again.baseHash[:16]) {
		t.Fatalf("resume on another base: %v; want a user error naming %.16s and %.16s", err, was, again.baseHash)
	}
	if _, err := Open(filepath.Join(dir, "ft"), "", Options{}); !usererr.Is(err) || !strings.Contains(err.Error(), was[:16]) {
		t.Fatalf("open on another base: %v; want a user error naming %.16s", err, was)
	}
}

// TestLoRAConfigErrors: LoRA without init.from, with a negative rank, or with a target
// glob that matches nothing or a tensor that cannot take an adapter is a user error
// naming the key.
func TestLoRAConfigErrors(t *testing.T) {
	for _, c := range []struct{ set, key string }{
		{"finetune.lora.rank=-1", "finetune.lora.rank"},
		{"finetune.lora.targets=[layers.*.attention.wq]", "finetune.lora.targets[0]"},
		{"finetune.lora.targets=[layers.*.attn.wq, layers.*.attn_norm.weight]", "finetune.lora.targets[1]"},
		{"finetune.lora.targets=[layers.1.moe.experts.w1]", "finetune.lora.targets[0]"},
		{"finetune.lora.dropout=1", "finetune.lora.dropout"},
	} {
		_, err := config.Parse("l.yaml", []byte(openYAML), []string{"init.from=x", "finetune.lora.rank=2", c.set})
		if !usererr.Is(err) || !strings.Contains(err.Error(), c.key+":") {
			t.Errorf("--set %s: %v; want a user error naming %s", c.set, err, c.key)
		}
	}
	_, err := config.Parse("l.yaml", []byte(openYAML), []string{`metap.overrides=[{match: "*", frozen: true}]`})
	if !usererr.Is(err) || !strings.Contains(err.Error(), "metap.overrides: every tensor is frozen") {
		t.Errorf("every tensor frozen: %v; want a user error naming metap.overrides", err)
	}
	_, err = config.Parse("l.yaml", []byte(openYAML), []string{"finetune.lora.rank=2"})
	if !usererr.Is(err) || !strings.Contains(err.Error(), "finetune.lora:") || !strings.Contains(err.Error(), "init.from") {
		t.Errorf("LoRA without init.from: %v; want a user error naming finetune.lora and init.from", err)
	}
}

// TestFrozenOverrides: metap.overrides[].frozen keeps the matching tensors' weights, gives
// them no gradient or moments, and trains the others, in fp32 and through FP8 linears
// (whose weight-gradient product is skipped); such a run resumes exactly.
func TestFrozenOverrides(t *testing.T) {
	for _, prec := range []string{"fp32", "fp8"} {
		sets := []string{"train.precision=" + prec, "train.steps=4",
			`metap.overrides=[{match: "layers.0.*", frozen: true}, {match: "tok_embeddings.weight", frozen: true}]`}
		tr := newTrainer(t, microConfig(t, sets...), Options{})
		lay, be := tr.Model.Layout, tr.opts.Backend
		before := slices.Clone(kernels.ToHost(be, tr.Model.Params))
		if _, err := tr.Run(context.Background(), 2); err != nil {
			t.Fatal(err)
		}
		after := kernels.ToHost(be, tr.Model.Params)
		frozen := 0
		for _, tn := range lay.Tensors {
			same := slices.Equal(before[tn.Offset:tn.Offset+tn.Size()], after[tn.Offset:tn.Offset+tn.Size()])
			isFrozen := strings.HasPrefix(tn.Name, "layers.0.") || tn.Name == "tok_embeddings.weight"
			if isFrozen != tn.Frozen() || isFrozen != same {
				t.Errorf("%s: %s frozen %v, unchanged by training %v; want both %v", prec, tn.Name, tn.Frozen(), same, isFrozen)
			}
			if isFrozen {
				frozen += tn.Size()
			}
		}
		if tr.Model.Grads.Len() != lay.Total-frozen || tr.opt.M.Len() != lay.Total-frozen {
			t.Errorf("%s: %d gradients and %d moments for %d trainable values", prec, tr.Model.Grads.Len(), tr.opt.M.Len(), lay.Total-frozen)
		}
		tr.Close()
	}
	testDeterministicAndExactResume(t, `metap.overrides=[{match: "layers.0.*", frozen: true}]`)
}
