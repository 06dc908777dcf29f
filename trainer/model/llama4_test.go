package model

import (
	"math"
	"slices"
	"testing"

	"github.com/herdml/herd/data"
)

// Llama 4's model options (qk_norm, attn_temperature, attention_chunk, moe.score_on_input):
// each one's gradients, where it changes the forward and where it must not, and its
// formula against a float64 recomputation from the model's own weights and activations.

// withLlama4 turns on all four options in cfg, which has testConfig's shape (RoPE on
// layers 0 and 1, not on layer 2, the last; MoE on layer 1): chunks of 2 positions and a
// temperature that scales the queries from position 1 on.
func withLlama4(cfg Config) Config {
	cfg.QKNorm = true
	cfg.AttentionChunk = 2
	cfg.AttnTemperature = AttnTemperature{FloorScale: 2, Scale: 0.5}
	cfg.MoE.ScoreOnInput = true
	return cfg
}

func TestLlama4GradientsMatchFiniteDifferences(t *testing.T) {
	all := withLlama4(testConfig())
	for _, c := range []struct {
		name string
		set  func(*Config)
	}{
		{"qk_norm", func(c *Config) { c.QKNorm = all.QKNorm }},
		{"attn_temperature", func(c *Config) { c.AttnTemperature = all.AttnTemperature }},
		{"attention_chunk", func(c *Config) { c.AttentionChunk = all.AttentionChunk }},
		{"score_on_input", func(c *Config) { c.MoE.ScoreOnInput = all.MoE.ScoreOnInput }},
		{"all", func(c *Config) { *c = all }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			c.set(&cfg)
			checkGradients(t, cfg)
		})
	}
}

// forward runs a float64 test model of cfg (newTestModel's weights, which do not depend on
// the options) on b and returns it and a copy of its logits.
func forward(cfg Config, b *data.Batch) (*Model[float64], []float64) {
	m := newTestModel[float64](cfg, b.B)
	m.Forward(b)
	return m, slices.Clone(m.Logits().Host())
}

// qk_norm divides each head's q and k, after RoPE, by their rms over D on RoPE layers, and
// leaves a model without RoPE layers unchanged.
func TestQKNorm(t *testing.T) {
	cfg := testConfig()
	b := testBatch(cfg, 2, 1)
	off, want := forward(cfg, b)
	cfg.QKNorm = true
	on, got := forward(cfg, b)
	if slices.Equal(got, want) {
		t.Fatal("qk_norm did not change the logits")
	}
	// Layer 0's input is the same in both: q and k before the norm are off's after RoPE.
	a, ref := &on.acts[0], &off.acts[0]
	N, H, KV, D := b.B*b.T, cfg.NHeads, cfg.NKVHeads, cfg.HeadDim()
	for _, c := range []struct {
		name          string
		normed, input []float64
		rows          int
	}{{"q", a.q.Host()[:N*H*D], a.qr.Host()[:N*H*D], N * H}, {"k", a.k.Host()[:N*KV*D], a.kr.Host()[:N*KV*D], N * KV}} {
		if want := map[string][]float64{"q": ref.q.Host()[:N*H*D], "k": ref.k.Host()[:N*KV*D]}[c.name]; !slices.Equal(c.input, want) {
			t.Errorf("%s before the norm differs from %s after RoPE without qk_norm", c.name, c.name)
		}
		for r := range c.rows {
			x, y := c.input[r*D:r*D+D], c.normed[r*D:r*D+D]
			var ss float64
			for _, v := range x {
				ss += v * v
			}
			rstd := 1 / math.Sqrt(ss/float64(D)+cfg.NormEps)
			for j := range D {
				if math.Abs(y[j]-x[j]*rstd) > 1e-14 {
					t.Fatalf("%s row %d (token %d, head %d): normed %v, want %v", c.name, r, r/(c.rows/N), r%(c.rows/N), y, x[j]*rstd)
				}
			}
		}
	}

	cfg.NoPEEvery = 1 // no RoPE layer: qk_norm has nothing to do
	cfg.QKNorm = false
	_, want = forward(cfg, b)
	cfg.QKNorm = true
	if _, got := forward(cfg, b); !slices.Equal(got, want) {
		t.Error("qk_norm changed a model without RoPE layers")
	}
}

// The attention temperature multiplies the NoPE layers' query at position p by
// 1 + scale·log(1 + floor((p+1)/floor_scale)): a no-op while p+1 < floor_scale, and
// nothing on RoPE layers.
func TestAttnTemperature(t *testing.T) {
	cfg := testConfig()
	b := testBatch(cfg, 3, 1)
	off, want := forward(cfg, b)
	cfg.AttnTemperature = AttnTemperature{FloorScale: 4, Scale: 0.5}
	on, got := forward(cfg, b)
	// Layer 2, the last, is the NoPE layer: a row's logits change exactly when its query
	// does, from position 3 on.
	V, HD := cfg.VocabSize, cfg.NHeads*cfg.HeadDim()
	qOn, qOff := on.acts[2].q.Host(), off.acts[2].q.Host()
	for r, p := range b.Pos {
		s := 1 + 0.5*math.Log1p(math.Floor(float64(p+1)/4))
		for j := range HD {
			if qOn[r*HD+j] != s*qOff[r*HD+j] {
				t.Fatalf("row %d (position %d): q %v, want %v times %v", r, p, qOn[r*HD+j], s, qOff[r*HD+j])
			}
		}
		if same := slices.Equal(got[r*V:r*V+V], want[r*V:r*V+V]); same != (p+1 < 4) {
			t.Errorf("row %d (position %d): logits unchanged %v, want %v", r, p, same, p+1 < 4)
		}
	}

	cfg.AttnTemperature.FloorScale = float64(cfg.SeqLen + 1) // p+1 < floor_scale everywhere
	if _, got := forward(cfg, b); !slices.Equal(got, want) {
		t.Error("a temperature with p+1 < floor_scale at every position changed the logits")
	}
	cfg.NoPEEvery = 0 // only RoPE layers
	cfg.AttnTemperature = AttnTemperature{}
	_, want = forward(cfg, b)
	cfg.AttnTemperature = AttnTemperature{FloorScale: 1, Scale: 0.5}
	if _, got := forward(cfg, b); !slices.Equal(got, want) {
		t.Error("the temperature changed a model without NoPE layers")
	}
}

// attention_chunk c: on RoPE layers a query sees only the keys of its own chunk of c
// positions of its document; c >= seq_len is no chunking.
func TestAttentionChunk(t *testing.T) {
	cfg := testConfig()
	b := testBatch(cfg, 3, 1)
	_, want := forward(cfg, b)
	for _, c := range []int{cfg.SeqLen, 100} {
		cfg.AttentionChunk = c
		if _, got := forward(cfg, b); !slices.Equal(got, want) {
			t.Errorf("attention_chunk %d >= seq_len %d changed the logits", c, cfg.SeqLen)
		}
	}
	cfg.AttentionChunk = 2
	m, got := forward(cfg, b)
	if slices.Equal(got, want) {
		t.Fatal("attention_chunk 2 did not change the logits")
	}
	// Sequence 0 holds documents of 4 and 5 positions: chunks {0,1} {2,3} | {4,5} {6,7} {8}.
	if ids, want := m.inHost.chunkDoc[:cfg.SeqLen], []int32{0, 0, 2, 2, 4, 4, 6, 6, 8}; !slices.Equal(ids, want) {
		t.Errorf("sequence 0's chunk ids %v, want %v", ids, want)
	}

	// With RoPE on every layer nothing flows between chunks: changing chunk 0's tokens of
	// a one-document sequence leaves the other chunks' logits as they were.
	cfg.NoPEEvery, cfg.AttentionChunk = 0, 3
	one := testBatch(cfg, 3, 1)
	one.Resize(1, cfg.SeqLen)
	for i := range one.Doc {
		one.Doc[i], one.Pos[i] = 0, int32(i)
	}
	one.PatchAt, one.Patches = nil, nil
	_, before := forward(cfg, one)
	for i := range 3 {
		one.Tokens[i] = (one.Tokens[i] + 1) % int32(cfg.VocabSize)
	}
	_, after := forward(cfg, one)
	V := cfg.VocabSize
	if slices.Equal(before[:3*V], after[:3*V]) {
		t.Error("changing chunk 0's tokens did not change its logits")
	}
	if !slices.Equal(before[3*V:], after[3*V:]) {
		t.Error("changing chunk 0's tokens changed the logits of later chunks")
	}
}

// moe.score_on_input: a MoE layer adds Σ SwiGLU_e(gate_e·h) + SwiGLU_shared(h) to the
// residual stream, gate_e = sigmoid(router logit), recomputed here in float64.
func TestScoreOnInput(t *testing.T) {
	cfg := testConfig()
	b := testBatch(cfg, 2, 1)
	_, want := forward(cfg, b)
	cfg.MoE.ScoreOnInput = true
	m, got := forward(cfg, b)
	if slices.Equal(got, want) {
		t.Fatal("score_on_input did not change the logits")
	}
	const i = 1 // the MoE layer
	l, a := m.layers[i], &m.acts[i]
	N, C, k, G := b.B*b.T, cfg.DModel, cfg.MoE.TopK, cfg.MoE.ExpertHidden
	h2, gates := a.h2.Host(), a.gate.Host()
	xmid, xn := m.acts[i].xmid.Host(), m.x[i+1].Host()
	w := func(t int) []float64 { return m.w(t).Host() }
	for tok := range N {
		h := h2[tok*C : tok*C+C]
		y := swiGLURef(h, w(l.sw1), w(l.sw3), w(l.sw2), m.Mult[l.sw1], m.Mult[l.sw3], m.Mult[l.sw2], C, G)
		for j := range k {
			s := tok*k + j
			e := expertOfRow(a.start, int(a.slotRow.Host()[s]))
			gh := make([]float64, C)
			for c := range C {
				gh[c] = gates[s] * h[c]
			}
			part := func(x []float64) []float64 { return x[e*G*C : (e+1)*G*C] }
			ye := swiGLURef(gh, part(w(l.ew1)), part(w(l.ew3)), part(w(l.ew2)), m.Mult[l.ew1], m.Mult[l.ew3], m.Mult[l.ew2], C, G)
			for c := range C {
				y[c] += ye[c]
			}
		}
		for c := range C {
			if d := xn[tok*C+c] - xmid[tok*C+c]; math.Abs(d-y[c]) > 1e-12 {
				t.Fatalf("token %d feature %d: the MoE layer adds %v, want %v", tok, c, d, y[c])
			}
		}
	}
}

// expertOfRow is the expert whose gathered rows [start[e], start[e+1]) hold row.
func expertOfRow(start []int, row int) int {
	e := 0
	for row >= start[e+1] {
		e++
	}
	return e
}

// swiGLURef is (silu(h·W1ᵀ·m1) ⊙ (h·W3ᵀ·m3))·W2ᵀ·m2 for one row h of C values, in float64.
//
//	w1, w3: [G, C]  w2: [C, G]
func swiGLURef(h, w1, w3, w2 []float64, m1, m3, m2 float64, C, G int) []float64 {
	u := make([]float64, G)
	for j := range G {
		var a1, a3 float64
		for c := range C {
			a1 += h[c] * w1[j*C+c]
			a3 += h[c] * w3[j*C+c]
		}
		a1, a3 = a1*m1, a3*m3
		u[j] = a1 / (1 + math.Exp(-a1)) * a3
	}
	y := make([]float64, C)
	for c := range C {
		for j := range G {
			y[c] += u[j] * w2[c*G+j]
		}
		y[c] *= m2
	}
	return y
}
