package fp8

import "fmt"

// tensor is a tensor stored in FP8 (E4M3): its codes and the inverse of the scale they
// were made with, so that value[i] ≈ Decode(codes[i])·scaleInv. It is how a Linear keeps
// its input for the backward pass: one byte per element instead of four.
type tensor struct {
	codes    []uint8
	scaleInv float32
	// tileInv: the blockwise recipe's inverse scales, one per tile (1×TileSize for the
	// input, TileSize×TileSize for the weight), row-major over the tiles; scaleInv is 1.
	tileInv []float32
}

// Linear is one linear layer's three GEMMs in FP8 with the HYBRID formats, emulated on a
// float32 backend the way FP8 tensor cores compute them: both operands are quantized with
// their per-tensor scales, the exact decoded FP8 values are multiplied and accumulated in
// float32, and the result is scaled back by the product of the inverse scales.
//
//	forward   y  = s·x·wᵀ       x, w in E4M3
//	backward  dx = s·dy·w       dy in E5M2 (float32 with Config.GradFP32), w the forward's E4M3 copy
//	          dw += s·dyᵀ·x     x the forward's E4M3 copy
//
// Shapes are those of torch.nn.Linear: x [n, in], w [out, in], y and dy [n, out]; s is the
// layer's forward multiplier (1 for none). Forward keeps x and w in FP8 for Backward, so a
// model running a Linear need not keep its own float32 copy of x.
//
// The scale-back factor α = s·scale_a⁻¹·scale_b⁻¹ is folded into the decoding of the
// operand read back from its codes (w, or x for dw) instead of a pass over the output:
// the quantization is bit-exact, and the GEMM differs from "exact products, then ·α" by
// one float32 rounding per operand element, the size of the float32 accumulation's own
// rounding (and none with power-of-two scales). This saves a pass over each GEMM's output
// and lets the backward accumulate straight into dx and dw.
type Linear struct {
	sc          *Scaling
	in, w, grad *Scaler
	shared      *Linear // reads the input that shared quantized, instead of its own

	x, wq   tensor // saved by Forward
	xSrc    *float32
	n, k, o int // n rows, k = in, o = out of the last Forward; n < 0 before any
	// wq holds the weight at wSrc quantized while the Scaling's gen was wGen: the weights
	// change only in the optimizer step, which Update ends, so the micro-batches of a step
	// quantize each weight once (as Transformer Engine caches FP8 weights across them).
	wSrc *float32
	wGen uint64
	dec  decoder // decodes w or x for a backward GEMM (kernels.Backend.MatMulCodes)
}

// Linear registers the scalers of a linear layer named name ("layers.3.attn.wq"):
// name.input and name.weight in E4M3, name.grad in E5M2 (E4M3 with Config.GradE4M3).
func (s *Scaling) Linear(name string) *Linear {
	return &Linear{sc: s, n: -1,
		in:   s.Scaler(name+".input", E4M3),
		w:    s.Scaler(name+".weight", E4M3),
		grad: s.Scaler(name+".grad", s.gradFormat()),
	}
}

// LinearSharingInput registers a linear layer that reads the same input as first, whose
// Forward runs just before its own on the very same slice (k and v after q, the up
// projection after the gate): it reuses first's FP8 copy of the input, so the input is
// quantized once and saved once. It has scalers name.weight and name.grad.
func (s *Scaling) LinearSharingInput(name string, first *Linear) *Linear {
	return &Linear{sc: s, n: -1, shared: first,
		w:    s.Scaler(name+".weight", E4M3),
		grad: s.Scaler(name+".grad", s.gradFormat()),
	}
}

// gradFormat is the format of the gradients: E5M2 (HYBRID) unless Config.GradE4M3.
func (s *Scaling) gradFormat() Format {
	if s.cfg.GradE4M3 {
		return E4M3
	}
	return E5M2
}

// Reserve sizes the shared workspace for operands of up to n values (the largest of
// rows·in, rows·out and out·in over the linears), so that the first step does not grow it
// one layer at a time: every outgrown slot would stay behind as garbage until the
// collector's next cycle and raise the process's peak memory by as much. Slot 1 holds
// only weights with per-tensor scales (the backward GEMMs decode as they pack), and grows
// to the largest of them.
func (s *Scaling) Reserve(n int) {
	s.workspace(0, n)
	if s.cfg.Recipe == Blockwise {
		s.workspace(1, n)
	}
}

// workspace returns slot i of the shared workspace with room for n values: slot 0 holds
// the decoded x or dy, slot 1 the decoded w (or, blockwise, x).
func (s *Scaling) workspace(i, n int) []float32 {
	if cap(s.ws[i]) < n {
		s.ws[i] = make([]float32, n)
		if i == 0 {
			s.xv = nil
		}
	}
	return s.ws[i][:n]
}

// Forward writes y = s·x·wᵀ and keeps x and w in FP8 for Backward.
//
//	y: [n, out]  x: [n, in]  w: [out, in]
func (l *Linear) Forward(y, x, w []float32, s float32, n, in, out int) {
	if len(x) < n*in || len(w) < out*in || len(y) < n*out {
		panic(fmt.Sprintf("fp8.Linear.Forward: x %d, w %d, y %d values too short for n=%d in=%d out=%d", len(x), len(w), len(y), n, in, out))
	}
	l.n, l.k, l.o = n, in, out
	if n == 0 {
		return
	}
	x, w, y = x[:n*in], w[:out*in], y[:n*out]
	xv, wv := l.sc.workspace(0, n*in), l.sc.workspace(1, out*in)
	if l.sc.cfg.Recipe == Blockwise {
		l.forwardTiles(xv, wv, x, w, s)
	} else {
		l.forwardTensor(xv, wv, x, w, s)
	}
	l.sc.be.MatMul(y, xv, wv, n, in, out, false, true, false)
}

// forwardTensor writes the forward GEMM's operands with per-tensor scales: x decoded
// into xv, and w decoded into wv with the scale-back factor s·x⁻¹·w⁻¹ folded in.
func (l *Linear) forwardTensor(xv, wv, x, w []float32, s float32) {
	n, in, out := l.n, l.k, l.o
	if l.shared == nil {
		l.x.codes = grow(l.x.codes, n*in)
		l.x.scaleInv = l.in.quantize(l.x.codes, xv, x)
		l.xSrc = &x[0]
		l.sc.xv = &l.x
	} else {
		l.checkShared(x)
		if l.sc.xv != &l.shared.x { // not left in slot 0 by the linear it shares with
			Dequantize(xv, l.shared.x.codes, 1, E4M3)
			l.sc.xv = &l.shared.x
		}
	}
	if l.weightStale(w) {
		l.wq.codes = grow(l.wq.codes, out*in)
		l.wq.scaleInv = l.w.quantize(l.wq.codes, nil, w)
		l.wSrc, l.wGen = &w[0], l.sc.gen
	}
	Dequantize(wv, l.wq.codes, s*l.input().scaleInv*l.wq.scaleInv, E4M3)
}

// checkShared panics unless l, sharing its input, runs right after the Linear it shares
// with, on the same x.
func (l *Linear) checkShared(x []float32) {
	if f := l.shared; f.xSrc != &x[0] || f.n != l.n || f.k != l.k {
		panic("fp8.Linear.Forward: a linear sharing its input must run right after the one it shares with, on the same x")
	}
}

// weightStale says whether w must be quantized again: another slice, or a new step.
func (l *Linear) weightStale(w []float32) bool {
	return l.wSrc != &w[0] || l.wGen != l.sc.gen || len(l.wq.codes) != len(w)
}

// input is the FP8 copy of the last Forward's x.
func (l *Linear) input() *tensor {
	if l.shared != nil {
		return &l.shared.x
	}
	return &l.x
}

// Backward is Forward's backward for the last Forward's x and w: it accumulates
// dw += s·dyᵀ·x and writes dx = s·dy·w, or adds it to dx when accumulate is set.
// dx or dw may be nil when that gradient is not needed. dy is not modified.
//
//	dx: [n, in]  dw: [out, in]  dy: [n, out]
func (l *Linear) Backward(dx, dw, dy []float32, s float32, accumulate bool) {
	n, in, out := l.n, l.k, l.o
	if n < 0 {
		panic("fp8.Linear.Backward before Forward")
	}
	if len(dy) < n*out || (dx != nil && len(dx) < n*in) || (dw != nil && len(dw) < out*in) {
		panic(fmt.Sprintf("fp8.Linear.Backward: dy %d, dx %d, dw %d values too short for n=%d in=%d out=%d", len(dy), len(dx), len(dw), n, in, out))
	}
	if n == 0 {
		return
	}
	l.sc.xv = nil // the backward writes dy's values into slot 0
	if l.sc.cfg.Recipe == Blockwise {
		l.backwardTiles(dx, dw, dy[:n*out], s, accumulate)
		return
	}
	be := l.sc.be
	dyv, gInv := dy[:n*out], float32(1)
	if l.sc.cfg.GradFP32 {
		l.grad.observe(dyv)
	} else {
		dyv = l.sc.workspace(0, n*out)
		gInv = l.grad.quantize(nil, dyv, dy[:n*out])
	}
	// The GEMMs decode w and x from their codes as they pack them.
	if dx != nil {
		l.dec = decoder{&formats[E4M3].decode, s * gInv * l.wq.scaleInv}
		be.MatMulCodes(dx[:n*in], dyv, l.wq.codes, &l.dec, n, out, in, false, accumulate)
	}
	if dw != nil {
		x := l.input()
		l.dec = decoder{&formats[E4M3].decode, s * gInv * x.scaleInv}
		be.MatMulCodes(dw[:out*in], dyv, x.codes, &l.dec, out, n, in, true, true)
	}
}

func grow(b []uint8, n int) []uint8 {
	if cap(b) < n {
		return make([]uint8, n)
	}
	return b[:n]
}
