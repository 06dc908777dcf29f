// Package coordcheck is the coordinate check of Tensor Programs V (Yang et al. 2022, §D.1)
// for herd's model: train a family of models that differ only in width (or depth) for a
// few steps at a high learning rate, under one MetaP table each, and see whether the mean
// absolute value of every activation stays the same size as the model grows. Under a
// parametrization that transfers (mup, metap) the log-log slopes stay near 0; under sp the
// hidden and output activations grow with width. `herd metap coord-check` runs it and
// fails on a slope out of bounds, so it can gate CI.
package coordcheck

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/trainer/config"
	"github.com/herdml/herd/trainer/model"
	"github.com/herdml/herd/trainer/optim"
)

// Options sizes the check.
type Options struct {
	Widths []int // d_model of each model of the width family, at the config's depth; at least 2
	Depths []int // n_layers of each model of the depth family, at the config's width; none = no depth check
	Steps  int   // optimizer steps; activations are measured before each and after the last
	Seeds  int   // independent inits and batches per model, their measures averaged
	Batch  int   // sequences per step
	SeqLen int   // positions per sequence, at most model.seq_len
}

// Series is one activation followed across a family: Values[t][i] is its mean |value| after
// t updates in the model of size Sizes[i], Slopes[t] the least-squares slope of log2(value)
// against log2(size).
type Series struct {
	Axis   string      `json:"axis"`  // "width" or "depth"
	Kind   string      `json:"kind"`  // embedding, attention, ffn, residual, logits
	Layer  int         `json:"layer"` // block index for attention, ffn and residual; -1 for the others and for depth
	Sizes  []int       `json:"sizes"`
	Values [][]float64 `json:"values"`
	Slopes []float64   `json:"slopes"` // NaN (null in JSON) where an activation is 0 at some size
}

// MarshalJSON writes undefined slopes as null, which JSON can carry and NaN cannot.
func (s Series) MarshalJSON() ([]byte, error) {
	type plain Series
	slopes := make([]*float64, len(s.Slopes))
	for i := range s.Slopes {
		if !math.IsNaN(s.Slopes[i]) {
			slopes[i] = &s.Slopes[i]
		}
	}
	return json.Marshal(struct {
		plain
		Slopes []*float64 `json:"slopes"`
	}{plain(s), slopes})
}

// Name says which activation the series follows, for tables and messages.
func (s Series) Name() string {
	switch {
	case s.Axis == "depth":
		return "residual (last block)"
	case s.Layer < 0:
		return s.Kind
	}
	return fmt.Sprintf("%s (block %d)", s.Kind, s.Layer)
}

// Result is every series of one check.
type Result struct {
	Mode   string   `json:"mode"` // the run's metap.mode
	Steps  int      `json:"steps"`
	Series []Series `json:"series"`
}

// Run trains every model of the families for opt.Steps steps and measures them. Each model
// is the run's model with d_model (or n_layers) changed; with d_model change the head count,
// ffn_hidden and expert_hidden in proportion, keeping the head dim. The MetaP table of each
// comes from the run's metap section; a proxy width or depth left at 0 there is the
// family's smallest, so that the table really changes along the family. The learning rate
// is train.optim.lr held constant (no warmup, no decay, no clipping: the check wants the
// raw dynamics), and the data are uniform random tokens from a fixed seed, the same for
// every model.
func Run(run config.Run, opt Options) (Result, error) {
	if err := opt.validate(run); err != nil {
		return Result{}, err
	}
	res := Result{Mode: run.MetaP.Mode, Steps: opt.Steps}
	base := run
	if base.MetaP.Base.DModel == 0 {
		base.MetaP.Base.DModel = minInt(opt.Widths)
	}
	if base.MetaP.Base.NLayers == 0 && len(opt.Depths) > 0 {
		base.MetaP.Base.NLayers = minInt(opt.Depths)
	}

	var width []model.ActStats // [size*(steps+1) + t]
	for _, w := range opt.Widths {
		r, err := withWidth(base, w)
		if err != nil {
			return Result{}, err
		}
		stats, err := trainSeeds(r, opt)
		if err != nil {
			return Result{}, err
		}
		width = append(width, stats...)
	}
	at := func(i, t int) model.ActStats { return width[i*(opt.Steps+1)+t] }
	add := func(kind string, layer int, get func(model.ActStats) float64) {
		res.Series = append(res.Series, newSeries("width", kind, layer, opt.Widths, opt.Steps, func(i, t int) float64 { return get(at(i, t)) }))
	}
	add("embedding", -1, func(s model.ActStats) float64 { return s.Embedding })
	for l := range run.Model.NLayers {
		add("attention", l, func(s model.ActStats) float64 { return s.Attention[l] })
		add("ffn", l, func(s model.ActStats) float64 { return s.FFN[l] })
		add("residual", l, func(s model.ActStats) float64 { return s.Residual[l] })
	}
	add("logits", -1, func(s model.ActStats) float64 { return s.Logits })

	if len(opt.Depths) > 0 {
		var last [][]float64 // [size][t]
		for _, d := range opt.Depths {
			r := base
			r.Model.NLayers = d
			stats, err := trainSeeds(r, opt)
			if err != nil {
				return Result{}, err
			}
			v := make([]float64, len(stats))
			for t, s := range stats {
				v[t] = s.Residual[d-1]
			}
			last = append(last, v)
		}
		res.Series = append(res.Series, newSeries("depth", "residual", -1, opt.Depths, opt.Steps, func(i, t int) float64 { return last[i][t] }))
	}
	return res, nil
}

func newSeries(axis, kind string, layer int, sizes []int, steps int, value func(i, t int) float64) Series {
	s := Series{Axis: axis, Kind: kind, Layer: layer, Sizes: sizes}
	for t := range steps + 1 {
		v := make([]float64, len(sizes))
		for i := range sizes {
			v[i] = value(i, t)
		}
		s.Values = append(s.Values, v)
		s.Slopes = append(s.Slopes, slope(sizes, v))
	}
	return s
}

// slope is the least-squares slope of log2(v) against log2(size); NaN if a value is 0.
func slope(sizes []int, v []float64) float64 {
	n := float64(len(v))
	var sx, sy, sxx, sxy float64
	for i, s := range sizes {
		if !(v[i] > 0) {
			return math.NaN()
		}
		x, y := math.Log2(float64(s)), math.Log2(v[i])
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// trainSeeds trains r's model from opt.Seeds seeds (the run's seed, then the next ones)
// and averages their measures, which takes out most of the finite-width noise a single
// init leaves in the slopes.
func trainSeeds(r config.Run, opt Options) ([]model.ActStats, error) {
	var sum []model.ActStats
	for i := range opt.Seeds {
		r.Seed++
		if i == 0 {
			r.Seed--
		}
		stats, err := train(r, opt)
		if err != nil {
			return nil, err
		}
		if sum == nil {
			sum = stats
			continue
		}
		for t := range sum {
			add(&sum[t], stats[t])
		}
	}
	for t := range sum {
		scale(&sum[t], 1/float64(opt.Seeds))
	}
	return sum, nil
}

func add(a *model.ActStats, b model.ActStats) {
	a.Embedding += b.Embedding
	a.Logits += b.Logits
	for l := range a.Attention {
		a.Attention[l] += b.Attention[l]
		a.FFN[l] += b.FFN[l]
		a.Residual[l] += b.Residual[l]
	}
}

func scale(a *model.ActStats, f float64) {
	a.Embedding *= f
	a.Logits *= f
	for l := range a.Attention {
		a.Attention[l] *= f
		a.FFN[l] *= f
		a.Residual[l] *= f
	}
}

// train builds r's model from its MetaP table, trains it for opt.Steps steps and returns
// the activation statistics measured before every update and after the last.
func train(r config.Run, opt Options) ([]model.ActStats, error) {
	tab, err := r.MetaPTable()
	if err != nil {
		return nil, err
	}
	be, err := device.Open(r.Train.Device)
	if err != nil {
		return nil, err
	}
	m := model.New[float32](r.Model, be, opt.Batch)
	groups := make([]optim.Group, len(tab.Entries))
	std := map[string]float64{}
	for i, e := range tab.Entries {
		t := m.Layout.Tensors[i]
		if t.Name != e.Name {
			return nil, fmt.Errorf("coordcheck: table entry %d is %s, layout has %s", i, e.Name, t.Name)
		}
		m.Mult[i] = float32(e.Mult)
		groups[i] = optim.Group{Name: e.Name, Offset: t.Offset, Param: t.Offset, Size: t.Size(), LR: e.LR, WeightDecay: e.WeightDecay, Eps: e.Eps}
		std[e.Name] = e.InitStd
	}
	if tab.AttnScale != 0 {
		m.AttnScale = float32(tab.AttnScale)
	}
	m.Init(r.Seed, func(t model.Tensor) float64 { return std[t.Name] })
	o := r.Train.Optim
	opt2, err := optim.New(be, m.Layout.Total, groups, o.Betas[0], o.Betas[1])
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(r.Seed, 0x636f6f7264)) // same stream for every model
	var b data.Batch
	var stats []model.ActStats
	randomBatch(&b, rng, opt.Batch, opt.SeqLen, r.Model.VocabSize)
	for t := range opt.Steps + 1 {
		res := m.Forward(&b)
		if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
			return nil, usererr.New("train.optim.lr", "the loss of the d_model %d, n_layers %d model is %g at step %d; lower the learning rate",
				r.Model.DModel, r.Model.NLayers, res.Loss, t)
		}
		stats = append(stats, m.ActStats())
		if t == opt.Steps {
			break
		}
		kernels.Zero(be, m.Grads)
		m.Backward(1)
		opt2.Step(m.Params, m.Grads, 1)
	}
	return stats, nil
}

// randomBatch fills b with B sequences of T uniform random tokens, each one document,
// every position trained on, whose targets follow a fixed random bigram map: a rule the
// model can learn, so that its updates line up with its inputs as on real data (random
// targets would leave the logits at their init, which μP shrinks with width by design).
func randomBatch(b *data.Batch, rng *rand.Rand, B, T, vocab int) {
	next := rng.Perm(vocab)
	b.Resize(B, T)
	for i := range B * T {
		tok := rng.IntN(vocab)
		b.Tokens[i], b.Targets[i] = int32(tok), int32(next[tok])
		b.Pos[i], b.Doc[i], b.Mask[i] = int32(i%T), 0, 1
	}
}

// withWidth is r's model at d_model w, with heads, kv heads, ffn_hidden and expert_hidden in
// proportion and the head dim unchanged.
func withWidth(r config.Run, w int) (config.Run, error) {
	m := r.Model
	C := m.DModel
	scale := func(v int) (int, bool) { return v * w / C, v*w%C == 0 && v*w/C > 0 }
	heads, ok1 := scale(m.NHeads)
	kv, ok2 := scale(m.NKVHeads)
	ffn, ok3 := scale(m.FFNHidden)
	exp, ok4 := m.MoE.ExpertHidden, true
	if m.MoE.Experts > 0 {
		exp, ok4 = scale(m.MoE.ExpertHidden)
	}
	if !ok1 || !ok2 || !ok3 || !ok4 {
		step := C / gcd(gcd(gcd(C, m.NKVHeads), gcd(m.NHeads, m.FFNHidden)), max(m.MoE.ExpertHidden, m.FFNHidden))
		return r, usererr.New("--widths", "width %d does not scale the model's heads (%d, %d kv), ffn_hidden (%d) and expert_hidden (%d) of d_model %d to whole numbers; use multiples of %d",
			w, m.NHeads, m.NKVHeads, m.FFNHidden, m.MoE.ExpertHidden, C, step)
	}
	m.DModel, m.NHeads, m.NKVHeads, m.FFNHidden, m.MoE.ExpertHidden = w, heads, kv, ffn, exp
	if err := m.Validate(); err != nil {
		return r, usererr.New("--widths", "width %d: %v", w, err)
	}
	r.Model = m
	return r, nil
}

func (o Options) validate(run config.Run) error {
	if len(o.Widths) < 2 {
		return usererr.New("--widths", "want at least two widths, got %v", o.Widths)
	}
	if len(o.Depths) == 1 {
		return usererr.New("--depths", "want at least two depths (or none), got %v", o.Depths)
	}
	for _, list := range []struct {
		flag string
		v    []int
	}{{"--widths", o.Widths}, {"--depths", o.Depths}} {
		seen := map[int]bool{}
		for _, v := range list.v {
			if v <= 0 || seen[v] {
				return usererr.New(list.flag, "want distinct positive sizes, got %v", list.v)
			}
			seen[v] = true
		}
	}
	switch {
	case o.Seeds < 1:
		return usererr.New("--seeds", "must be at least 1, got %d", o.Seeds)
	case o.Steps < 1:
		return usererr.New("--steps", "must be at least 1, got %d", o.Steps)
	case o.Batch < 1:
		return usererr.New("--batch", "must be at least 1, got %d", o.Batch)
	case o.SeqLen < 1 || o.SeqLen > run.Model.SeqLen:
		return usererr.New("--seq-len", "must be in [1, model.seq_len = %d], got %d", run.Model.SeqLen, o.SeqLen)
	}
	return nil
}

func minInt(v []int) int {
	m := v[0]
	for _, x := range v[1:] {
		m = min(m, x)
	}
	return m
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
