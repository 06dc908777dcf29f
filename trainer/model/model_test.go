package model

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/metap"
)

// testConfig is tiny but has every feature: vision, a MoE layer with top-2 routing and a
// shared expert between dense layers, no RoPE on the last layer, grouped-query attention.
func testConfig() Config {
	return Config{
		VocabSize: 11, DModel: 8, NLayers: 3, NHeads: 2, NKVHeads: 1, FFNHidden: 12,
		SeqLen: 9, RopeTheta: 10000, NoPEEvery: 3, NormEps: 1e-5,
		MoE:    MoE{Experts: 3, TopK: 2, SharedExpert: true, Every: 2, ExpertHidden: 6, AuxLoss: 0.1},
		Vision: Vision{Patch: 2, Channels: 1},
	}
}

// testBatch packs several documents per sequence, masks some positions and places image
// patches (whose positions are not trained on).
func testBatch(cfg Config, B int, seed uint64) *data.Batch {
	rng := rand.New(rand.NewPCG(seed, 1))
	T := cfg.SeqLen
	b := &data.Batch{}
	b.Resize(B, T)
	// Document lengths per sequence, repeated until the sequence is full.
	docLens := [][]int{{4, 5}, {3, 3, 3}, {9}}
	for s := range B {
		lens := docLens[s%len(docLens)]
		d, p := 0, 0
		for t := range T {
			if p == lens[d%len(lens)] {
				d, p = d+1, 0
			}
			i := s*T + t
			b.Tokens[i] = int32(rng.IntN(cfg.VocabSize))
			b.Targets[i] = int32(rng.IntN(cfg.VocabSize))
			b.Pos[i], b.Doc[i] = int32(p), int32(d)
			b.Mask[i] = 1
			if rng.IntN(4) == 0 {
				b.Mask[i] = 0
			}
			p++
		}
	}
	if P := cfg.PatchPixels(); P > 0 {
		for _, at := range []int32{1, 2, int32(T + 4)} {
			if int(at) >= B*T {
				continue
			}
			b.PatchAt = append(b.PatchAt, at)
			b.Mask[at] = 0
			for range P {
				b.Patches = append(b.Patches, rng.Float32())
			}
		}
	}
	return b
}

// newTestModel builds a model with random weights, gains away from 1 and non-default
// multipliers, so that every multiplier and gain path is exercised.
func newTestModel[F float32 | float64](cfg Config, B int) *Model[F] {
	m := New[F](cfg, device.CPU[F](), B)
	m.Init(3, func(Tensor) float64 { return 0.4 })
	rng := rand.New(rand.NewPCG(5, 5))
	for i, t := range m.Layout.Tensors {
		if t.Class == metap.Gain {
			for j := range t.Size() {
				m.Params.Host()[t.Offset+j] = F(1 + 0.3*rng.NormFloat64())
			}
		}
		m.Mult[i] = F(0.6 + 0.8*rng.Float64())
	}
	m.AttnScale = 0.7
	return m
}

func TestGradientsMatchFiniteDifferences(t *testing.T) { checkGradients(t, testConfig()) }

// checkGradients compares Backward's gradients of a model of cfg (testConfig's shape) with
// central finite differences in float64, at 6 random entries of every tensor.
func checkGradients(t *testing.T, cfg Config) {
	t.Helper()
	b := testBatch(cfg, 2, 1)
	m := newTestModel[float64](cfg, 2)
	loss := func() float64 {
		r := m.Forward(b)
		return r.Loss + r.Aux
	}
	loss()
	m.Backward(1)

	rng := rand.New(rand.NewPCG(9, 9))
	const h = 1e-5
	kinds := map[string]bool{}
	for _, tn := range m.Layout.Tensors {
		kinds[kind(tn.Name)] = true
		for range 6 {
			j := tn.Offset + rng.IntN(tn.Size())
			params := m.Params.Host()
			p := params[j]
			params[j] = p + h
			up := loss()
			params[j] = p - h
			down := loss()
			params[j] = p
			num, ana := (up-down)/(2*h), m.Grads.Host()[j]
			if math.Abs(num-ana) > 1e-6*math.Max(math.Abs(num), math.Abs(ana))+1e-9 {
				t.Errorf("%s[%d]: backward %.10g, finite difference %.10g", tn.Name, j-tn.Offset, ana, num)
			}
		}
	}
	want := []string{"attn.wk", "attn.wo", "attn.wq", "attn.wv", "attn_norm.weight", "ffn.w1", "ffn.w2", "ffn.w3",
		"ffn_norm.weight", "moe.experts.w1", "moe.experts.w2", "moe.experts.w3", "moe.router", "moe.shared.w1",
		"moe.shared.w2", "moe.shared.w3", "norm.weight", "output.weight", "patch_proj.weight", "tok_embeddings.weight"}
	got := make([]string, 0, len(kinds))
	for k := range kinds {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("checked tensor kinds %v, want %v", got, want)
	}
}

// kind strips the layer number from a tensor name: "layers.1.attn.wq" -> "attn.wq".
func kind(name string) string {
	if rest, ok := strings.CutPrefix(name, "layers."); ok {
		return rest[strings.IndexByte(rest, '.')+1:]
	}
	return name
}

func TestAttentionStaysInsideDocuments(t *testing.T) {
	cfg := testConfig()
	b := testBatch(cfg, 1, 2) // one sequence: documents [0,4) and [4,9)
	m := newTestModel[float64](cfg, 1)
	m.Forward(b)
	before := slices.Clone(m.Logits().Host())
	for i := range 4 {
		b.Tokens[i] = (b.Tokens[i] + 1) % int32(cfg.VocabSize)
	}
	b.PatchAt, b.Patches = nil, nil
	m.Forward(b)
	after := m.Logits().Host()
	V := cfg.VocabSize
	if slices.Equal(before[:4*V], after[:4*V]) {
		t.Fatal("changing document 0 did not change its logits")
	}
	if !slices.Equal(before[4*V:], after[4*V:]) {
		t.Fatal("changing document 0 changed document 1's logits")
	}
}

func TestFloat32MatchesFloat64(t *testing.T) {
	for _, cfg := range []Config{testConfig(), withLlama4(testConfig())} {
		float32MatchesFloat64(t, cfg)
	}
}

func float32MatchesFloat64(t *testing.T, cfg Config) {
	t.Helper()
	b := testBatch(cfg, 3, 3)
	m64, m32 := newTestModel[float64](cfg, 3), newTestModel[float32](cfg, 3)
	for i, p := range m64.Params.Host() {
		m32.Params.Host()[i] = float32(p)
	}
	r64, r32 := m64.Forward(b), m32.Forward(b)
	if math.Abs(r64.Loss-r32.Loss) > 1e-5*r64.Loss || math.Abs(r64.Aux-r32.Aux) > 1e-5*r64.Aux {
		t.Fatalf("float32 loss %v aux %v, float64 loss %v aux %v", r32.Loss, r32.Aux, r64.Loss, r64.Aux)
	}
	m64.Backward(1)
	m32.Backward(1)
	var num, den float64
	for i, g := range m64.Grads.Host() {
		d := g - float64(m32.Grads.Host()[i])
		num += d * d
		den += g * g
	}
	if math.Sqrt(num/den) > 1e-4 {
		t.Fatalf("float32 gradients differ from float64 by %g (relative norm)", math.Sqrt(num/den))
	}
}

func TestThreadCountDoesNotChangeResults(t *testing.T) {
	cfg := testConfig()
	cfg.SeqLen = 70 // more than one attention block of query rows
	b := testBatch(cfg, 3, 4)
	run := func(procs int) (Result, []float32, []float32) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		m := newTestModel[float32](cfg, 3)
		r := m.Forward(b)
		m.Backward(1)
		return r, slices.Clone(m.Logits().Host()), m.Grads.Host()
	}
	r1, l1, g1 := run(1)
	r2, l2, g2 := run(4)
	if r1.Loss != r2.Loss || r1.Aux != r2.Aux || !slices.Equal(l1, l2) || !slices.Equal(g1, g2) {
		t.Fatalf("1 thread: loss %v aux %v; 4 threads: loss %v aux %v; logits equal %v, grads equal %v",
			r1.Loss, r1.Aux, r2.Loss, r2.Aux, slices.Equal(l1, l2), slices.Equal(g1, g2))
	}
}

// A batch smaller than the micro-batch (an eval tail) must give the results of a model
// sized for it exactly, also after a larger batch left its activations in the buffers.
func TestSmallerBatchThanMicroBatch(t *testing.T) {
	cfg := testConfig()
	big, small := newTestModel[float64](cfg, 3), newTestModel[float64](cfg, 2)
	big.Forward(testBatch(cfg, 3, 6))
	big.Backward(1)
	clear(big.Grads.Host())
	b := testBatch(cfg, 2, 7)
	rb, rs := big.Forward(b), small.Forward(b)
	big.Backward(0.5)
	small.Backward(0.5)
	if rb.Loss != rs.Loss || rb.Aux != rs.Aux || rb.Tokens != rs.Tokens {
		t.Fatalf("micro-batch 3 model: %+v; micro-batch 2 model: %+v", rb, rs)
	}
	if !slices.Equal(big.Logits().Host(), small.Logits().Host()) || !slices.Equal(big.Grads.Host(), small.Grads.Host()) {
		t.Fatal("logits or gradients of a 2-sequence batch differ between models sized for 3 and 2")
	}
}

func TestRouting(t *testing.T) {
	cfg := testConfig()
	cfg.MoE.Experts, cfg.MoE.TopK = 4, 2
	m := New[float64](cfg, device.CPU[float64](), 1)
	a := &m.acts[1]
	// Token 0 ties experts 1 and 3 for first place: the lower index wins. Token 1 ties 0
	// and 2 for second place. Token 2 is plain.
	r := []float64{
		0.1, 2, -1, 2,
		3, -2, 3, 5,
		-1, 0.5, 0.25, 0,
	}
	copy(a.r.Host(), r)
	m.route(a, 3)
	slotRow, rowTok, gate, rowGate := a.slotRow.Host(), a.rowTok.Host(), a.gate.Host(), a.rowGate.Host()
	wantExperts := []int{1, 3, 3, 0, 1, 2}
	for s, e := range wantExperts {
		tok := s / 2
		row := int(slotRow[s])
		if int(rowTok[row]) != tok || row < a.start[e] || row >= a.start[e+1] {
			t.Errorf("slot %d (token %d): gathered row %d of token %d, want a row of expert %d in [%d, %d)",
				s, tok, row, rowTok[row], e, a.start[e], a.start[e+1])
		}
		if want := 1 / (1 + math.Exp(-r[tok*4+e])); math.Abs(gate[s]-want) > 1e-15 || rowGate[row] != gate[s] {
			t.Errorf("slot %d: gate %v (row %v), want sigmoid(%v) = %v", s, gate[s], rowGate[row], r[tok*4+e], want)
		}
	}
	if want := []float64{1.0 / 6, 2.0 / 6, 1.0 / 6, 2.0 / 6}; !slices.Equal(a.load, want) {
		t.Errorf("load %v, want %v", a.load, want)
	}
	for tok := range 3 {
		var sum float64
		for e := range 4 {
			sum += a.probs.Host()[tok*4+e]
		}
		if math.Abs(sum-1) > 1e-15 {
			t.Errorf("token %d: router probabilities sum to %v", tok, sum)
		}
	}
}

func TestInit(t *testing.T) {
	cfg := testConfig()
	std := func(t Tensor) float64 {
		if t.Class == metap.Readout {
			return 0
		}
		return 0.02 * float64(len(t.Name)) // a different scale per tensor
	}
	a, b := New[float32](cfg, device.CPU[float32](), 1), New[float32](cfg, device.CPU[float32](), 1)
	a.Init(7, std)
	b.Init(7, std)
	if !slices.Equal(a.Params.Host(), b.Params.Host()) {
		t.Fatal("same seed, different parameters")
	}
	b.Init(8, std)
	for _, tn := range a.Layout.Tensors {
		w, w2 := a.Params.Host()[tn.Offset:tn.Offset+tn.Size()], b.Params.Host()[tn.Offset:tn.Offset+tn.Size()]
		var ss float64
		for _, v := range w {
			ss += float64(v) * float64(v)
		}
		rms := math.Sqrt(ss / float64(len(w)))
		switch {
		case tn.Class == metap.Gain:
			if slices.ContainsFunc(w, func(v float32) bool { return v != 1 }) {
				t.Errorf("%s: gains not all 1", tn.Name)
			}
		case std(tn) == 0:
			if slices.ContainsFunc(w, func(v float32) bool { return math.Float32bits(v) != 0 }) {
				t.Errorf("%s: std 0 but not all +0", tn.Name)
			}
		case len(w) >= 64 && math.Abs(rms-std(tn)) > 0.3*std(tn):
			t.Errorf("%s: rms %v, want about %v", tn.Name, rms, std(tn))
		case slices.Equal(w, w2):
			t.Errorf("%s: seeds 7 and 8 give the same values", tn.Name)
		}
	}
}
