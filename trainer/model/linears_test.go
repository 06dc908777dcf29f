package model

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/device"
)

// copyLinear is a Linear in float64 that computes exactly what mm and mmBackward compute
// and, as the Linear contract asks, keeps its own copy of x: the model no longer does.
type copyLinear struct {
	be         kernels.Backend[float64]
	name       string
	first      *copyLinear
	x, w       kernels.Buf[float64]
	xbuf       kernels.Buf[float64] // room for x
	n, in, out int
	forwards   int
	most       int // the largest of n·in, n·out and out·in over the Forwards
}

func (l *copyLinear) Forward(y, x, W kernels.Buf[float64], s float64, n, in, out int) {
	if l.xbuf.Len() < n*in {
		l.xbuf = kernels.Alloc[float64](l.be, n*in)
	}
	l.x, l.w, l.n, l.in, l.out = l.xbuf.Slice(0, n*in), W, n, in, out
	kernels.Copy(l.be, l.x, x.Slice(0, n*in))
	l.forwards++
	l.most = max(l.most, n*in, n*out, out*in)
	l.be.MatMul(y, x, W, n, in, out, false, true, false)
	if s != 1 {
		l.be.Scale(y, s)
	}
}

func (l *copyLinear) Backward(dx, dW, dy kernels.Buf[float64], s float64, accumulate bool) {
	if s != 1 {
		l.be.Scale(dy.Slice(0, l.n*l.out), s)
	}
	if dW.Len() > 0 { // a frozen W has none
		l.be.MatMul(dW, dy, l.x, l.out, l.n, l.in, true, false, true)
	}
	l.be.MatMul(dx, dy, l.w, l.n, l.out, l.in, false, false, accumulate)
}

// SetLinears must hand every hidden and expert matrix to a Linear, pair the ones that read
// the same input, and, with its activations now shared between layers, give the same
// losses and gradients as the model without Linears, bit for bit; also with Llama 4's
// options.
func TestSetLinearsKeepsResults(t *testing.T) {
	for _, cfg := range []Config{testConfig(), withLlama4(testConfig())} {
		linearsKeepResults(t, cfg)
	}
}

func linearsKeepResults(t *testing.T, cfg Config) {
	t.Helper()
	batches := []int{2, 1} // the second smaller: an eval tail after a full micro-batch
	run := func(m *Model[float64]) ([]Result, []float64) {
		var rs []Result
		for i, B := range batches {
			rs = append(rs, m.Forward(testBatch(cfg, B, uint64(7+i))))
			m.Backward(0.5)
		}
		return rs, m.Grads.Host()
	}
	want, wantGrads := run(newTestModel[float64](cfg, 2))

	m := newTestModel[float64](cfg, 2)
	lins := map[string]*copyLinear{}
	var order []string
	m.SetLinears(func(name string, first Linear[float64]) Linear[float64] {
		l := &copyLinear{be: device.CPU[float64](), name: name}
		if first != nil {
			l.first = first.(*copyLinear)
		}
		lins[name] = l
		order = append(order, name)
		return l
	})
	got, gotGrads := run(m)
	for i := range want {
		if got[i].Loss != want[i].Loss || got[i].Aux != want[i].Aux {
			t.Errorf("batch %d: loss %v aux %v with Linears, %v %v without", i, got[i].Loss, got[i].Aux, want[i].Loss, want[i].Aux)
		}
	}
	if !slices.Equal(gotGrads, wantGrads) {
		t.Error("gradients differ with Linears")
	}

	// testConfig: dense, MoE (shared expert + 3 experts), dense.
	var names []string
	swiglu := func(p string) { names = append(names, p+".w1", p+".w3", p+".w2") }
	for i := range cfg.NLayers {
		for _, w := range []string{"wq", "wk", "wv", "wo"} {
			names = append(names, fmt.Sprintf("layers.%d.attn.%s", i, w))
		}
		if !cfg.IsMoE(i) {
			swiglu(fmt.Sprintf("layers.%d.ffn", i))
			continue
		}
		swiglu(fmt.Sprintf("layers.%d.moe.shared", i))
		for e := range cfg.MoE.Experts {
			names = append(names, fmt.Sprintf("layers.%d.moe.experts.w1.%d", i, e),
				fmt.Sprintf("layers.%d.moe.experts.w3.%d", i, e), fmt.Sprintf("layers.%d.moe.experts.w2.%d", i, e))
		}
	}
	if !slices.Equal(order, names) {
		t.Fatalf("linears made:\n%v\nwant, in forward order:\n%v", order, names)
	}
	// LinearOperandMax bounds every operand the Linears got and is one of them (the dense
	// FFN's on the full micro-batch).
	most := 0
	for _, l := range lins {
		most = max(most, l.most)
	}
	if bound := m.LinearOperandMax(); most != bound {
		t.Errorf("the largest operand of a Linear was %d values, LinearOperandMax says %d", most, bound)
	}
	for name, l := range lins {
		want := ""
		switch {
		case strings.HasSuffix(name, ".wk") || strings.HasSuffix(name, ".wv"):
			want = name[:len(name)-2] + "wq"
		case strings.Contains(name, ".w3"):
			want = strings.Replace(name, ".w3", ".w1", 1)
		}
		if got := ""; l.first != nil && l.first.name != want || l.first == nil && want != "" {
			if l.first != nil {
				got = l.first.name
			}
			t.Errorf("%s shares the input of %q, want %q", name, got, want)
		}
		if l.forwards == 0 {
			t.Errorf("%s: never ran", name)
		}
	}
}
