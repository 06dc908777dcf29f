package trainer

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/metap"
	"github.com/herdml/herd/trainer/checkpoint"
)

// overrideWQ is a per-layer override through the config: layers.0.attn.wq learns 4× faster
// and starts 3× larger than the rules say.
const overrideWQ = `metap.overrides=[{match: "layers.0.attn.wq", lr_mult: 4, init_mult: 3}]`

// Must show 3 (first half): the trainer initialises and optimises from the MetaP table, so
// changing the table through the config changes the init and the optimizer exactly as the
// table says, and nothing else.
func TestTrainerFollowsTheMetaPTable(t *testing.T) {
	const wq = "layers.0.attn.wq"
	base := newTrainer(t, microConfig(t), Options{})
	defer base.Close()
	over := newTrainer(t, microConfig(t, overrideWQ), Options{})
	defer over.Close()
	// mup with a proxy half as wide: hidden matrices σ/√2 and η/2, the readout a 1/2
	// multiplier; embedding and gains keep the base values.
	mup := newTrainer(t, microConfig(t, "metap.mode=mup", "metap.base.d_model=24"), Options{})
	defer mup.Close()

	for _, tr := range []*Trainer{base, over, mup} {
		checkFollowsTable(t, tr)
	}

	// The table itself: the override multiplies wq's LR by 4 and its init std by 3, and
	// changes no other value of any tensor.
	lr, sigma := base.Cfg.Train.Optim.LR, base.Cfg.MetaP.InitStd
	for i, e := range over.Table.Entries {
		want := base.Table.Entries[i]
		if e.Name == wq {
			want.LR, want.InitStd = 4*lr, 3*sigma
		}
		if !entriesEqual(e, want) {
			t.Errorf("override table %s = %+v, want %+v", e.Name, e, want)
		}
	}
	// The init: the same seed draws the same normals, so wq is exactly 3× the run without
	// the override, every other tensor identical; and against a tensor of the same class
	// drawn independently (wk), the sample std ratio is 3 within sampling noise (wq has
	// 2304 entries, wk 1152: the ratio's relative standard error is about 2.5%).
	for _, ten := range base.Model.Layout.Tensors {
		a, b := tensorOf(base, ten.Name), tensorOf(over, ten.Name)
		k := float32(1)
		if ten.Name == wq {
			k = 3
		}
		for j := range a {
			if d := math.Abs(float64(b[j] - k*a[j])); d > 1e-6*math.Abs(float64(a[j])) {
				t.Fatalf("%s[%d]: %g with the override, %g without; want ×%g", ten.Name, j, b[j], a[j], k)
			}
		}
	}
	ratio := sampleStd(tensorOf(over, wq)) / sampleStd(tensorOf(over, "layers.0.attn.wk"))
	if math.Abs(ratio-3) > 3*0.08 {
		t.Errorf("std(wq)/std(wk) = %.3f with init_mult 3, want 3 ± 8%%", ratio)
	}
	if ratio := sampleStd(tensorOf(base, wq)) / sampleStd(tensorOf(base, "layers.0.attn.wk")); math.Abs(ratio-1) > 0.08 {
		t.Errorf("std(wq)/std(wk) = %.3f without the override, want 1 ± 8%%", ratio)
	}

	// The optimizer: wq's group has 4× the LR, every other group the base run's values.
	for i, g := range over.opt.Groups {
		want := base.opt.Groups[i]
		if g.Name == wq {
			want.LR = 4 * lr
		}
		if g != want {
			t.Errorf("optimizer group %+v, want %+v", g, want)
		}
	}

	// mup: the table's values move as the rules say, and the trainer follows (checked above).
	for _, e := range mup.Table.Entries {
		initStd, lrWant, mult := sigma, lr, 1.0
		switch e.Class {
		case metap.Hidden, metap.Expert:
			initStd, lrWant = sigma/math.Sqrt(2), lr/2
		case metap.Readout, metap.Router:
			mult = 0.5
		case metap.Gain:
			initStd = 0
		}
		if !near(e.InitStd, initStd) || !near(e.LR, lrWant) || !near(e.Mult, mult) {
			t.Errorf("mup %s: init %g lr %g mult %g, want %g %g %g", e.Name, e.InitStd, e.LR, e.Mult, initStd, lrWant, mult)
		}
	}

	// One optimizer step moves every tensor by its own LR: on Adam's first step every
	// element with a gradient moves by lr·f·g/(|g|+eps) besides the decay, so the largest
	// move of a tensor is its table LR times the schedule factor f. wq moves 4× as far.
	for _, tr := range []*Trainer{base, over, mup} {
		before := slices.Clone(tr.Model.Params.Host())
		st, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		f := st.LR / tr.Cfg.Train.Optim.LR
		for i, ten := range tr.Model.Layout.Tensors {
			e := tr.Table.Entries[i]
			var most float64
			for j := ten.Offset; j < ten.Offset+ten.Size(); j++ {
				decayed := float64(before[j]) * (1 - e.LR*f*e.WeightDecay)
				most = max(most, math.Abs(decayed-float64(tr.Model.Params.Host()[j])))
			}
			if got := most / f; math.Abs(got/e.LR-1) > 2e-3 {
				t.Errorf("%s: %s moved by up to %.6g / f, want its table LR %.6g", tr.Cfg.MetaP.Mode, ten.Name, got, e.LR)
			}
		}
	}
}

// checkFollowsTable checks that every tensor of tr has the table's forward multiplier,
// optimizer LR, weight decay and eps, and an init of the table's std: gains exactly 1,
// zero std exactly 0, and otherwise a sample std within 6 standard errors of InitStd.
func checkFollowsTable(t *testing.T, tr *Trainer) {
	t.Helper()
	lay := tr.Model.Layout
	if len(tr.Table.Entries) != len(lay.Tensors) || len(tr.opt.Groups) != len(lay.Tensors) {
		t.Fatalf("%d tensors, %d table entries, %d optimizer groups", len(lay.Tensors), len(tr.Table.Entries), len(tr.opt.Groups))
	}
	for i, ten := range lay.Tensors {
		e, g := tr.Table.Entries[i], tr.opt.Groups[i]
		if e.Name != ten.Name || g.Name != ten.Name || g.Offset != ten.Offset || g.Size != ten.Size() {
			t.Fatalf("tensor %d: %s, table %s, optimizer %s at %d+%d", i, ten.Name, e.Name, g.Name, g.Offset, g.Size)
		}
		if g.LR != e.LR || g.WeightDecay != e.WeightDecay || g.Eps != e.Eps || tr.Model.Mult[i] != float32(e.Mult) {
			t.Errorf("%s: optimizer lr %g wd %g eps %g, mult %g; table %+v", ten.Name, g.LR, g.WeightDecay, g.Eps, tr.Model.Mult[i], e)
		}
		w := tensorOf(tr, ten.Name)
		switch {
		case e.Class == metap.Gain:
			if slices.ContainsFunc(w, func(v float32) bool { return v != 1 }) {
				t.Errorf("%s: gain not initialised to 1", ten.Name)
			}
		case e.InitStd == 0:
			if slices.ContainsFunc(w, func(v float32) bool { return v != 0 }) {
				t.Errorf("%s: table std 0, weights not all zero", ten.Name)
			}
		default:
			// The sample std of n normals has relative standard error 1/√(2n).
			got, tol := sampleStd(w), 6/math.Sqrt(2*float64(len(w)))
			if math.Abs(got/e.InitStd-1) > tol {
				t.Errorf("%s: init std %.5f, table %.5f (tolerance %.1f%%)", ten.Name, got, e.InitStd, 100*tol)
			}
		}
	}
}

// Must show 3 (second half): a checkpoint records the MetaP table's hash; a resume with
// another table is refused with a user error, both when the config changed it (an override
// added) and when the config is the same but the table is not (other parametrization rules).
func TestCheckpointRecordsTheMetaPTable(t *testing.T) {
	cfg := microConfig(t, "train.checkpoint.every=1")
	tr := newTrainer(t, cfg, Options{})
	if _, err := tr.Run(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	st, err := checkpoint.ReadState(tr.store, checkpoint.Name(1))
	if err != nil {
		t.Fatal(err)
	}
	table, err := cfg.MetaPTable()
	if err != nil {
		t.Fatal(err)
	}
	if st.TableHash != table.Hash() || len(st.TableHash) != 64 {
		t.Fatalf("state.json table_hash %q, want the table's hash %q", st.TableHash, table.Hash())
	}

	// The same run resumes.
	same := newTrainer(t, cfg, Options{})
	if name, err := same.Resume(""); err != nil || name != checkpoint.Name(1) {
		t.Fatalf("resume with the same table: %q, %v", name, err)
	}
	same.Close() // each trainer below takes over the run's folder in turn

	// An override added through the config: another table, refused, naming the key.
	ovCfg := microConfig(t, "train.checkpoint.every=1", overrideWQ)
	ovCfg.Train.Checkpoint.Dir = cfg.Train.Checkpoint.Dir
	ov := newTrainer(t, ovCfg, Options{})
	if ov.Table.Hash() == st.TableHash {
		t.Fatal("the override did not change the table's hash")
	}
	_, err = ov.Resume("")
	if !usererr.Is(err) || !strings.Contains(err.Error(), "metap.overrides.0.match: checkpoint absent") {
		t.Fatalf("resume with an override added: %v", err)
	}
	ov.Close()

	// The same config under other rules (here: the override's table stands in for what
	// another herd version's rules would give): refused, saying the table differs, with
	// both hashes. The same holds for a checkpoint named explicitly.
	other := newTrainer(t, cfg, Options{})
	defer other.Close()
	other.Table = ov.Table
	for _, path := range []string{"", filepath.Join(tr.CheckpointDir(), checkpoint.Name(1))} {
		_, err = other.Resume(path)
		if !usererr.Is(err) || !strings.Contains(err.Error(), "the MetaP table differs from the checkpoint's") ||
			!strings.Contains(err.Error(), st.TableHash[:12]) || !strings.Contains(err.Error(), ov.Table.Hash()[:12]) {
			t.Fatalf("resume %q under another table: %v", path, err)
		}
	}
	if other.StepCount() != 0 {
		t.Fatalf("a refused resume left the trainer at step %d", other.StepCount())
	}
}

// tensorOf is the named tensor's slice of tr's parameters.
func tensorOf(tr *Trainer, name string) []float32 {
	for _, ten := range tr.Model.Layout.Tensors {
		if ten.Name == name {
			return tr.Model.Params.Host()[ten.Offset : ten.Offset+ten.Size()]
		}
	}
	panic("no tensor " + name)
}

// sampleStd is the standard deviation of w around its mean.
func sampleStd(w []float32) float64 {
	var sum, sq float64
	for _, v := range w {
		sum += float64(v)
	}
	mean := sum / float64(len(w))
	for _, v := range w {
		sq += (float64(v) - mean) * (float64(v) - mean)
	}
	return math.Sqrt(sq / float64(len(w)-1))
}

func entriesEqual(a, b metap.Entry) bool {
	return a.Name == b.Name && a.Class == b.Class && slices.Equal(a.Shape, b.Shape) && a.InitStd == b.InitStd &&
		a.LR == b.LR && a.WeightDecay == b.WeightDecay && a.Eps == b.Eps && a.Mult == b.Mult
}

// near reports whether a and b agree to 1e-12 relative.
func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(math.Abs(a), math.Abs(b)) }
