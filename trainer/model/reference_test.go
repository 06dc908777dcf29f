package model

import (
	"encoding/json"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/metap"
)

// The model against an independent implementation: docs/model.md's PyTorch reference,
// run on the same weights and batch, gave the numbers in testdata/pytorch.json. After a
// deliberate change to the computation (and to docs/model.md), regenerate them with
//
//	go test ./trainer/model -run TestMatchesPyTorch -dump /tmp/reference.json
//	python3 trainer/model/testdata/pytorch.py /tmp/reference.json > trainer/model/testdata/pytorch.json
var dumpPath = flag.String("dump", "", "TestMatchesPyTorch writes its weights and batch to this JSON file")

// referenceSetup is a model with every feature (vision, top-2 MoE with a shared expert,
// a no-RoPE layer, grouped-query attention), random weights and gains, non-default
// multipliers and attention scale, and a batch of several documents per sequence with
// masked positions and image patches.
func referenceSetup() (Config, *data.Batch, []float64, []float64, float64) {
	cfg := Config{
		VocabSize: 37, DModel: 24, NLayers: 4, NHeads: 4, NKVHeads: 2, FFNHidden: 40,
		SeqLen: 70, RopeTheta: 10000, NoPEEvery: 4, NormEps: 1e-5,
		MoE:    MoE{Experts: 5, TopK: 2, SharedExpert: true, Every: 2, ExpertHidden: 16, AuxLoss: 0.05},
		Vision: Vision{Patch: 2, Channels: 3},
	}
	B, T := 3, cfg.SeqLen
	rng := rand.New(rand.NewPCG(11, 12))
	b := &data.Batch{}
	b.Resize(B, T)
	for s := range B {
		d, p := 0, 0
		for t := range T {
			i := s*T + t
			if rng.IntN(20) == 0 {
				d, p = d+1, 0
			}
			b.Tokens[i], b.Targets[i] = int32(rng.IntN(cfg.VocabSize)), int32(rng.IntN(cfg.VocabSize))
			b.Pos[i], b.Doc[i], b.Mask[i] = int32(p), int32(d), float32(rng.IntN(5)/4)
			p++
		}
	}
	for i := 3; i < B*T; i += 17 {
		b.PatchAt = append(b.PatchAt, int32(i))
		b.Mask[i] = 0
		for range cfg.PatchPixels() {
			b.Patches = append(b.Patches, rng.Float32())
		}
	}
	m := New[float64](cfg, device.CPU[float64](), B)
	m.Init(1, func(Tensor) float64 { return 0.3 })
	for i, t := range m.Layout.Tensors {
		if t.Class == metap.Gain {
			for j := range t.Size() {
				m.Params.Host()[t.Offset+j] = 1 + 0.2*rng.NormFloat64()
			}
		}
		m.Mult[i] = 0.5 + rng.Float64()
	}
	return cfg, b, m.Params.Host(), m.Mult, 0.3
}

// pytorchResult is testdata/pytorch.json.
type pytorchResult struct {
	Loss, Aux float64
	Rows      []int       // rows of the logits kept
	Logits    [][]float64 // [len(Rows), V]
}

func TestMatchesPyTorch(t *testing.T) {
	cfg, b, params, mult, attnScale := referenceSetup()
	m64 := New[float64](cfg, device.CPU[float64](), b.B)
	m32 := New[float32](cfg, device.CPU[float32](), b.B)
	copy(m64.Params.Host(), params)
	copy(m64.Mult, mult)
	for i, v := range params {
		m32.Params.Host()[i] = float32(v)
	}
	for i, v := range mult {
		m32.Mult[i] = float32(v)
	}
	m64.AttnScale, m32.AttnScale = attnScale, float32(attnScale)
	r64, r32 := m64.Forward(b), m32.Forward(b)

	if *dumpPath != "" {
		w := map[string]any{}
		mults := map[string]float64{}
		for i, tn := range m64.Layout.Tensors {
			w[tn.Name] = map[string]any{"shape": tn.Shape, "data": params[tn.Offset : tn.Offset+tn.Size()]}
			mults[tn.Name] = mult[i]
		}
		js, err := json.Marshal(map[string]any{"cfg": cfg, "weights": w, "mult": mults, "attn_scale": attnScale, "batch": b})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*dumpPath, js, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	js, err := os.ReadFile("testdata/pytorch.json")
	if err != nil {
		t.Fatal(err)
	}
	var want pytorchResult
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	rel := func(a, b float64) float64 { return math.Abs(a-b) / math.Abs(b) }
	if rel(r64.Loss, want.Loss) > 1e-12 || rel(r64.Aux, want.Aux) > 1e-12 {
		t.Errorf("float64: loss %.15g aux %.15g, PyTorch %.15g %.15g", r64.Loss, r64.Aux, want.Loss, want.Aux)
	}
	if rel(r32.Loss, want.Loss) > 1e-5 || rel(r32.Aux, want.Aux) > 1e-5 {
		t.Errorf("float32: loss %.9g aux %.9g, PyTorch (float64) %.9g %.9g", r32.Loss, r32.Aux, want.Loss, want.Aux)
	}
	V, logits := cfg.VocabSize, m64.Logits().Host()
	if len(want.Rows) == 0 {
		t.Fatal("testdata/pytorch.json has no logits")
	}
	for i, row := range want.Rows {
		for j, w := range want.Logits[i] {
			if got := logits[row*V+j]; math.Abs(got-w) > 1e-10 {
				t.Fatalf("logits[%d, %d] = %.15g, PyTorch %.15g", row, j, got, w)
			}
		}
	}
}
