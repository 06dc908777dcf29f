package coordcheck

import (
	"bytes"
	"errors"
	"image/png"
	"math"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
)

// small is a 2-block model (dense, then MoE with a shared expert) small enough to train
// three widths for a few steps in well under a second each.
func small(t *testing.T, mode string) config.Run {
	t.Helper()
	run, err := config.Parse("coord.yaml", []byte(`
model: {vocab_size: 64, d_model: 32, n_layers: 2, n_heads: 2, n_kv_heads: 1, ffn_hidden: 96, seq_len: 16,
        moe: {experts: 2, top_k: 1, shared_expert: true, every: 2, expert_hidden: 64}}
data: {synthetic: true}
train: {optim: {lr: 3.0e-3}}
metap: {mode: `+mode+`}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

var opts = Options{Widths: []int{32, 64, 128}, Depths: []int{2, 4}, Steps: 4, Seeds: 3, Batch: 1, SeqLen: 16}

// Under sp the hidden activations grow with width from the init on; under metap the
// residual stream stays flat in width and depth at every step, and no activation grows
// as sp's do.
func TestMetaPIsFlatWhereSPGrows(t *testing.T) {
	sp, err := Run(small(t, "sp"), opts)
	if err != nil {
		t.Fatal(err)
	}
	mp, err := Run(small(t, "metap"), opts)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	sp.WriteTable(&table)
	mp.WriteTable(&table)
	t.Log("\n" + table.String())
	if len(sp.Series) != 1+3*2+1+1 || len(mp.Series) != len(sp.Series) {
		t.Fatalf("%d and %d series, want embedding, 3 per block, logits and depth = 9", len(sp.Series), len(mp.Series))
	}
	for i, s := range sp.Series {
		m := mp.Series[i]
		last := len(s.Slopes) - 1
		switch {
		case s.Kind == "attention" || s.Kind == "ffn":
			if s.Slopes[last] < 0.5 {
				t.Errorf("sp %s: slope %.3f at the last step, want growth of at least 0.5", s.Name(), s.Slopes[last])
			}
			if worst(m) > s.Slopes[last]/2 {
				t.Errorf("metap %s: |slope| up to %.3f, not clearly flatter than sp's %.3f", m.Name(), worst(m), s.Slopes[last])
			}
		case s.Kind == "residual" && s.Axis == "width":
			if worst(m) > 0.15 {
				t.Errorf("metap %s: |slope| up to %.3f, want at most 0.15", m.Name(), worst(m))
			}
		}
	}
	if len(sp.Check(0.15)) == 0 {
		t.Error("sp passes the 0.15 gate")
	}
}

// worst is the largest |slope| over the training steps.
func worst(s Series) float64 {
	w := 0.0
	for _, k := range s.Slopes[1:] {
		w = math.Max(w, math.Abs(k))
	}
	return w
}

func TestDeterministicAndDrawn(t *testing.T) {
	o := opts
	o.Depths = nil
	a, err := Run(small(t, "metap"), o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(small(t, "metap"), o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Series {
		for s := range a.Series[i].Values {
			for w, v := range a.Series[i].Values[s] {
				if v != b.Series[i].Values[s][w] {
					t.Fatalf("%s differs between runs at step %d, width %d", a.Series[i].Name(), s, a.Series[i].Sizes[w])
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := a.WritePNG(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() < 4*r.Dy() { // five width panels side by side
		t.Errorf("image %v is not a row of panels", r)
	}
}

func TestBadOptionsNameTheFlag(t *testing.T) {
	run := small(t, "metap")
	for flag, o := range map[string]Options{
		"--widths":  {Widths: []int{32}, Steps: 1, Seeds: 1, Batch: 1, SeqLen: 8},
		"--depths":  {Widths: []int{32, 64}, Depths: []int{2, 2}, Steps: 1, Seeds: 1, Batch: 1, SeqLen: 8},
		"--steps":   {Widths: []int{32, 64}, Steps: 0, Seeds: 1, Batch: 1, SeqLen: 8},
		"--seq-len": {Widths: []int{32, 64}, Steps: 1, Seeds: 1, Batch: 1, SeqLen: 17},
	} {
		_, err := Run(run, o)
		var u *usererr.Error
		if !errors.As(err, &u) || u.Where != flag {
			t.Errorf("%s: want a user error naming it, got %v", flag, err)
		}
	}
	// 40 does not scale 2 heads of width 16 to a whole number of heads.
	_, err := Run(run, Options{Widths: []int{32, 40}, Steps: 1, Seeds: 1, Batch: 1, SeqLen: 8})
	if !usererr.Is(err) || !strings.Contains(err.Error(), "multiples of") {
		t.Errorf("width 40: want a user error suggesting multiples, got %v", err)
	}
}

// Under CompleteP the blocks' init outputs sum to Θ(1/√L), so with the base values alone
// the last residual stream's init part shrinks with depth; metap.input_mult, which makes
// the embedding outweigh the blocks, keeps it flat from the init on (docs/metap.md).
func TestInputMultFlattensDepth(t *testing.T) {
	o := Options{Widths: []int{32, 64}, Depths: []int{2, 4, 8}, Steps: 3, Seeds: 3, Batch: 1, SeqLen: 16}
	depth := func(mult float64) Series {
		run := small(t, "metap")
		run.MetaP.InputMult = mult
		res, err := Run(run, o)
		if err != nil {
			t.Fatal(err)
		}
		return res.Series[len(res.Series)-1]
	}
	plain, mult := depth(0), depth(10)
	t.Logf("depth slopes, input_mult 1: %.3f; 10: %.3f", plain.Slopes, mult.Slopes)
	if plain.Slopes[0] > -0.03 {
		t.Errorf("input_mult 1: init slope %.3f against depth, want the blocks' 1/√L to show (< -0.03)", plain.Slopes[0])
	}
	if w := math.Max(math.Abs(mult.Slopes[0]), worst(mult)); w > 0.01 {
		t.Errorf("input_mult 10: |slope| against depth up to %.3f, want at most 0.01", w)
	}
}
