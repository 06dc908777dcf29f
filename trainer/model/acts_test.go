package model

import (
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
	"github.com/herdml/herd/kernels/fp8"
)

// tableCodec is an exact Codec for tests: it keeps a copy of each packed matrix with the
// codes it was packed into, and checks every call's shapes. A Decode must read codes that
// an Encode of the same pass wrote (a range of rows of them, or all).
type tableCodec[F float32 | float64] struct {
	t    *testing.T
	kept []kept[F]
}

type kept[F float32 | float64] struct {
	codes kernels.Buf[uint8]
	vals  []F
}

func (c *tableCodec[F]) Scales(cols int) int { return (cols + 3) / 4 }

func (c *tableCodec[F]) check(op string, ncodes, nscales, n, cols int) {
	if n%cols != 0 || ncodes != n || nscales != n/cols*c.Scales(cols) {
		c.t.Fatalf("%s: %d values in rows of %d with %d codes, %d scales", op, n, cols, ncodes, nscales)
	}
}

func (c *tableCodec[F]) Encode(codes kernels.Buf[uint8], scales kernels.Buf[float32], src kernels.Buf[F], cols int) {
	c.check("Encode", codes.Len(), scales.Len(), src.Len(), cols)
	if src.Len() > 0 {
		c.kept = append(c.kept, kept[F]{codes, slices.Clone(src.Host())})
	}
}

func (c *tableCodec[F]) Decode(dst kernels.Buf[F], codes kernels.Buf[uint8], scales kernels.Buf[float32], cols int) {
	n := dst.Len()
	c.check("Decode", codes.Len(), scales.Len(), n, cols)
	if n == 0 {
		return
	}
	p := codes.Addr()
	for i := len(c.kept) - 1; i >= 0; i-- { // the latest Encode of these codes
		k := c.kept[i]
		if b := k.codes.Addr(); p >= b && p+uintptr(n) <= b+uintptr(k.codes.Len()) {
			copy(dst.Host(), k.vals[p-b:])
			return
		}
	}
	c.t.Fatalf("Decode of %d values: no Encode of this pass wrote them", n)
}

// With an exact codec, a model whose saved activations go through SetCodec, alone or with
// SetLinears, computes the same losses and gradients as the plain model, bit for bit: the
// forward pass and the scratch buffers it borrows leave nothing changed, and the backward
// reads each layer's own activations of the current pass. Also with Llama 4's options.
func TestSetCodecKeepsResults(t *testing.T) {
	for _, cfg := range []Config{testConfig(), withLlama4(testConfig())} {
		codecKeepsResults(t, cfg)
	}
}

func codecKeepsResults(t *testing.T, cfg Config) {
	t.Helper()
	// Wide enough that the SwiGLU backward takes the dense layer's 18 rows in two blocks
	// (13 rows of 5000 values, then 5) and the shared expert's in two (16 of 4000, then 2).
	cfg.FFNHidden, cfg.MoE.ExpertHidden = 5000, 4000
	batches := []int{2, 1} // the second smaller: an eval tail after a full micro-batch
	run := func(m *Model[float64], c *tableCodec[float64]) ([]Result, []float64) {
		var rs []Result
		for i, B := range batches {
			if c != nil {
				c.kept = nil
			}
			rs = append(rs, m.Forward(testBatch(cfg, B, uint64(7+i))))
			m.Backward(0.5)
		}
		return rs, m.Grads.Host()
	}
	ref := newTestModel[float64](cfg, 2)
	want, wantGrads := run(ref, nil)
	wantStats := ref.ActStats()

	for _, linears := range []bool{false, true} {
		m := newTestModel[float64](cfg, 2)
		if linears {
			m.SetLinears(func(name string, first Linear[float64]) Linear[float64] {
				return &copyLinear{be: device.CPU[float64](), name: name}
			})
		}
		c := &tableCodec[float64]{t: t}
		m.SetCodec(c)
		got, gotGrads := run(m, c)
		for i := range want {
			if got[i].Loss != want[i].Loss || got[i].Aux != want[i].Aux {
				t.Errorf("linears %v, batch %d: loss %v aux %v with a codec, %v %v without", linears, i, got[i].Loss, got[i].Aux, want[i].Loss, want[i].Aux)
			}
		}
		if !slices.Equal(gotGrads, wantGrads) {
			t.Errorf("linears %v: gradients differ with an exact codec", linears)
		}
		if got := m.ActStats(); !reflect.DeepEqual(got, wantStats) {
			t.Errorf("linears %v: activation stats %+v with a codec, %+v without", linears, got, wantStats)
		}
		// testConfig: 3 layers × (q, k, v, att, x_i, x_mid) + 2 dense SwiGLUs × (a1, a3) +
		// the MoE layer's shared SwiGLU, 3 experts' (a1, a3) at most and y (unless gates
		// scale the experts' inputs), per pass.
		want := 18 + 4 + 2 + 2 + 1
		if cfg.MoE.ScoreOnInput {
			want--
		}
		if len(c.kept) < want {
			t.Errorf("linears %v: %d activations packed in the last pass", linears, len(c.kept))
		}
	}
}

// With FP8 tiles (fp8.NewTileCodec) the forward pass is unchanged, bit for bit: it computes
// in float32 and only the backward reads the packed values. The gradients are those of
// E4M3 activations: close to float32's, not the same (0.3 % off in relative norm here,
// with weights of std 0.02; E4M3's rounding error is up to 6 % of a value). Also with
// Llama 4's options.
func TestSetCodecFP8Tiles(t *testing.T) {
	for _, cfg := range []Config{testConfig(), withLlama4(testConfig())} {
		codecFP8Tiles(t, cfg)
	}
}

func codecFP8Tiles(t *testing.T, cfg Config) {
	t.Helper()
	cfg.FFNHidden, cfg.MoE.ExpertHidden = 300, 130 // tiles of 128 and narrower ones
	b := testBatch(cfg, 3, 3)
	var ms [2]*Model[float32]
	var rs [2]Result
	for i := range ms {
		be := device.CPU[float32]()
		ms[i] = New[float32](cfg, be, 3)
		ms[i].Init(2, func(Tensor) float64 { return 0.02 })
		if i == 1 {
			ms[i].SetCodec(fp8.NewTileCodec(be))
		}
		rs[i] = ms[i].Forward(b)
		ms[i].Backward(1)
	}
	if rs[0].Loss != rs[1].Loss || rs[0].Aux != rs[1].Aux {
		t.Fatalf("loss %v aux %v with FP8 tiles, %v %v without", rs[1].Loss, rs[1].Aux, rs[0].Loss, rs[0].Aux)
	}
	var num, den float64
	for i, g := range ms[0].Grads.Host() {
		d := float64(g - ms[1].Grads.Host()[i])
		num += d * d
		den += float64(g) * float64(g)
	}
	if e := math.Sqrt(num / den); e > 0.03 || e == 0 {
		t.Errorf("gradients with FP8 tiles differ from float32's by %g (relative norm), want (0, 0.03]", e)
	} else {
		t.Logf("relative gradient error %.2g", e)
	}
}
