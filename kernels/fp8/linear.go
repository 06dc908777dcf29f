package fp8

import (
	"fmt"

	"github.com/herdml/herd/kernels"
)

// store is a backend buffer that grows on demand: mem is the allocation, and a request for
// n elements gets a view of its first n, so that a buffer sized for the largest operand
// serves every smaller one without allocating.
type store[T kernels.Elem] struct{ mem kernels.Buf[T] }

// get returns n elements of s, allocating a new buffer of n from mem when s has fewer.
func (s *store[T]) get(mem kernels.Memory, n int) kernels.Buf[T] {
	if s.mem.Len() < n {
		s.mem = kernels.Alloc[T](mem, n)
	}
	return s.mem.Slice(0, n)
}

// tensor is a tensor stored in FP8 (E4M3): its codes and the inverse of the scale they
// were made with, so that value[i] ≈ Decode(codes[i])·scaleInv. It is how a Linear keeps
// its input for the backward pass: one byte per element instead of four.
type tensor struct {
	codes    kernels.Buf[uint8]
	scaleInv float32
	// tileInv: the blockwise recipe's inverse scales, one per tile (1×TileSize for the
	// input, TileSize×TileSize for the weight), row-major over the tiles; scaleInv is 1.
	tileInv kernels.Buf[float32]
	// the backend buffers codes and tileInv are views of
	codeMem store[uint8]
	invMem  store[float32]
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

	x, wq   tensor               // saved by Forward
	xSrc    kernels.Buf[float32] // the x of the last Forward, compared by Addr
	n, k, o int                  // n rows, k = in, o = out of the last Forward; n < 0 before any
	// wq holds the weight wSrc quantized while the Scaling's gen was wGen: the weights
	// change only in the optimizer step, which Update ends, so the micro-batches of a step
	// quantize each weight once (as Transformer Engine caches FP8 weights across them).
	wSrc kernels.Buf[float32]
	wGen uint64
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

// workspace returns slot i of the shared workspace, a backend buffer, with room for n
// values: slot 0 holds the decoded x or dy, slot 1 the decoded w (or, blockwise, x).
func (s *Scaling) workspace(i, n int) kernels.Buf[float32] {
	if i == 0 && s.ws[0].mem.Len() < n {
		s.xv = nil
	}
	return s.ws[i].get(s.be, n)
}

// Forward writes y = s·x·wᵀ and keeps x and w in FP8 for Backward.
//
//	y: [n, out]  x: [n, in]  w: [out, in]
func (l *Linear) Forward(y, x, w kernels.Buf[float32], s float32, n, in, out int) {
	if x.Len() < n*in || w.Len() < out*in || y.Len() < n*out {
		panic(fmt.Sprintf("fp8.Linear.Forward: x %d, w %d, y %d values too short for n=%d in=%d out=%d", x.Len(), w.Len(), y.Len(), n, in, out))
	}
	l.n, l.k, l.o = n, in, out
	if n == 0 {
		return
	}
	x, w, y = x.Slice(0, n*in), w.Slice(0, out*in), y.Slice(0, n*out)
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
func (l *Linear) forwardTensor(xv, wv, x, w kernels.Buf[float32], s float32) {
	n, in, out := l.n, l.k, l.o
	be := l.sc.be
	if l.shared == nil {
		l.x.codes = l.x.codeMem.get(be, n*in)
		l.x.scaleInv = l.in.quantize(l.x.codes, xv, x)
		l.xSrc = x
		l.sc.xv = &l.x
	} else {
		l.checkShared(x)
		if l.sc.xv != &l.shared.x { // not left in slot 0 by the linear it shares with
			be.Dequantize(xv, l.shared.x.codes, 1, E4M3)
			l.sc.xv = &l.shared.x
		}
	}
	if l.weightStale(w) {
		l.wq.codes = l.wq.codeMem.get(be, out*in)
		l.wq.scaleInv = l.w.quantize(l.wq.codes, kernels.Buf[float32]{}, w)
		l.wSrc, l.wGen = w, l.sc.gen
	}
	be.Dequantize(wv, l.wq.codes, s*l.input().scaleInv*l.wq.scaleInv, E4M3)
}

// checkShared panics unless l, sharing its input, runs right after the Linear it shares
// with, on the same x.
func (l *Linear) checkShared(x kernels.Buf[float32]) {
	if f := l.shared; f.xSrc.Addr() != x.Addr() || f.n != l.n || f.k != l.k {
		panic("fp8.Linear.Forward: a linear sharing its input must run right after the one it shares with, on the same x")
	}
}

// weightStale says whether w must be quantized again: another buffer, or a new step.
func (l *Linear) weightStale(w kernels.Buf[float32]) bool {
	return l.wSrc.Addr() != w.Addr() || l.wGen != l.sc.gen || l.wq.codes.Len() != w.Len()
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
// dx or dw may be empty when that gradient is not needed. dy is not modified.
//
//	dx: [n, in]  dw: [out, in]  dy: [n, out]
func (l *Linear) Backward(dx, dw, dy kernels.Buf[float32], s float32, accumulate bool) {
	n, in, out := l.n, l.k, l.o
	if n < 0 {
		panic("fp8.Linear.Backward before Forward")
	}
	if dy.Len() < n*out || (dx.Len() > 0 && dx.Len() < n*in) || (dw.Len() > 0 && dw.Len() < out*in) {
		panic(fmt.Sprintf("fp8.Linear.Backward: dy %d, dx %d, dw %d values too short for n=%d in=%d out=%d", dy.Len(), dx.Len(), dw.Len(), n, in, out))
	}
	if n == 0 {
		return
	}
	l.sc.xv = nil // the backward writes dy's values into slot 0
	if l.sc.cfg.Recipe == Blockwise {
		l.backwardTiles(dx, dw, dy.Slice(0, n*out), s, accumulate)
		return
	}
	be := l.sc.be
	dyv, gInv := dy.Slice(0, n*out), float32(1)
	if l.sc.cfg.GradFP32 {
		l.grad.observe(dyv)
	} else {
		dyv = l.sc.workspace(0, n*out)
		gInv = l.grad.quantize(kernels.Buf[uint8]{}, dyv, dy.Slice(0, n*out))
	}
	// The GEMMs decode w and x from their codes as they pack them.
	if dx.Len() > 0 {
		be.MatMulCodes(dx.Slice(0, n*in), dyv, l.wq.codes, E4M3, s*gInv*l.wq.scaleInv, n, out, in, false, accumulate)
	}
	if dw.Len() > 0 {
		x := l.input()
		be.MatMulCodes(dw.Slice(0, out*in), dyv, x.codes, E4M3, s*gInv*x.scaleInv, out, n, in, true, true)
	}
}
