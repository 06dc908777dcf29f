package cpu

import (
	"math"
	"unsafe"

	"github.com/herdml/herd/kernels"
)

// Elementwise and gather ops: SwiGLU, the fused softmax cross-entropy, scale/axpy, and the
// row gathers that route tokens to experts and combine them back. Each forward sits beside
// its backward; every output row or element is written by one goroutine only.

// elemGrain is the fewest elements worth a goroutine for O(1) work per element.
const elemGrain = 1 << 14

// expF is e^x for the ops: math.Exp in float64, where gradient checks need every digit;
// in float32 expPoly, twice as fast and as accurate as float32 can hold. exp is the
// largest cost of SwiGLU and attention after the matrix products.
func expF[F kernels.Float](x F) F {
	if unsafe.Sizeof(x) == 8 {
		return F(math.Exp(float64(x)))
	}
	return F(expPoly(float64(x)))
}

// expPoly is e^x with relative error below 3e-7 for results in float32's normal range:
// x = n·ln2 + r with |r| <= ln2/2, e^r by its Taylor series to r⁶ (truncation error
// < 2e-7), times 2ⁿ built from the exponent bits. It returns 0 below float32's smallest
// normal and +Inf above its largest value, and NaN for NaN.
func expPoly(x float64) float64 {
	switch {
	case x != x:
		return x
	case x < -87.33:
		return 0
	case x > 88.73:
		return math.Inf(1)
	}
	n := math.Floor(x*math.Log2E + 0.5)
	r := x - n*math.Ln2
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720))))))
	return p * math.Float64frombits(uint64(int64(n)+1023)<<52)
}

// swiGLU is kernels.Backend's SwiGLU on the buffers' slices. sigmoid(a) = 1/(1+e^-a),
// divided in float64. The vector kernel, where there is one, computes in float32
// throughout.
func (be *Backend[F]) swiGLU(out, sig, a, u []F) {
	parallelFor(len(out), elemGrain, swiglu[F]{be.impl(), out, sig, a, u})
}

type swiglu[F kernels.Float] struct {
	im             *gemmImpl
	out, sig, a, u []F
}

func (t *swiglu[F]) run(lo, hi int) {
	swiGLU(t.im, t.out[lo:hi], t.sig[lo:hi], t.a[lo:hi], t.u[lo:hi])
}

// swiGLUBackward is kernels.Backend's SwiGLUBackward on the buffers' slices. With s =
// sigmoid(a): silu(a) = a·s and silu'(a) = s·(1 + a·(1-s)).
func (be *Backend[F]) swiGLUBackward(da, du, dout, a, u, sig []F) {
	parallelFor(len(dout), elemGrain, swigluBackward[F]{be.impl(), da, du, dout, a, u, sig})
}

type swigluBackward[F kernels.Float] struct {
	im                      *gemmImpl
	da, du, dout, a, u, sig []F
}

func (t *swigluBackward[F]) run(lo, hi int) {
	swiGLUBackward(t.im, t.da[lo:hi], t.du[lo:hi], t.dout[lo:hi], t.a[lo:hi], t.u[lo:hi], t.sig[lo:hi])
}

// crossEntropy is kernels.Backend's CrossEntropy on the buffers' slices. The row sum of
// exponentials runs in F after subtracting the row maximum.
func (be *Backend[F]) crossEntropy(loss, lse, logits []F, targets []int32, v int) {
	parallelFor(len(loss), rowGrain, crossEntropy[F]{be.impl(), loss, lse, logits, targets, v})
}

type crossEntropy[F kernels.Float] struct {
	im                *gemmImpl
	loss, lse, logits []F
	targets           []int32
	v                 int
}

func (t *crossEntropy[F]) run(lo, hi int) {
	v := t.v
	buf := getBuf[F](v)
	defer putBuf(buf)
	for i := lo; i < hi; i++ {
		row := t.logits[i*v : i*v+v]
		mx := row[0]
		for _, x := range row {
			mx = max(mx, x)
		}
		sum := expShift(t.im, copyTo(*buf, row), mx)
		t.lse[i] = mx + F(math.Log(float64(sum)))
		t.loss[i] = t.lse[i] - row[t.targets[i]]
	}
}

// copyTo copies src into dst and returns the copy.
func copyTo[F kernels.Float](dst, src []F) []F { return dst[:copy(dst, src)] }

// crossEntropyBackward is kernels.Backend's CrossEntropyBackward on the buffers' slices.
// Rows with weight 0 are skipped.
func (be *Backend[F]) crossEntropyBackward(dlogits, logits, lse []F, targets []int32, w []F, v int) {
	parallelFor(len(lse), rowGrain, crossEntropyBackward[F]{be.impl(), dlogits, logits, lse, targets, w, v})
}

type crossEntropyBackward[F kernels.Float] struct {
	im                   *gemmImpl
	dlogits, logits, lse []F
	targets              []int32
	w                    []F
	v                    int
}

func (t *crossEntropyBackward[F]) run(lo, hi int) {
	v, w := t.v, t.w
	buf := getBuf[F](v)
	defer putBuf(buf)
	for i := lo; i < hi; i++ {
		if w[i] == 0 {
			continue
		}
		p := copyTo(*buf, t.logits[i*v:i*v+v])
		expShift(t.im, p, t.lse[i])
		drow := t.dlogits[i*v : i*v+v]
		for j, x := range p {
			drow[j] += w[i] * x
		}
		drow[t.targets[i]] -= w[i]
	}
}

// scale is kernels.Backend's Scale on the buffers' slices.
func (be *Backend[F]) scale(x []F, s F) {
	parallelFor(len(x), elemGrain, scale[F]{be.impl(), x, s})
}

type scale[F kernels.Float] struct {
	im *gemmImpl
	x  []F
	s  F
}

func (t *scale[F]) run(lo, hi int) { scaleBy(t.im, t.x[lo:hi], t.s) }

// axpy is kernels.Backend's Axpy on the buffers' slices.
func (be *Backend[F]) axpy(y, x []F, a F) {
	parallelFor(len(y), elemGrain, axpy[F]{be.impl(), y, x, a})
}

type axpy[F kernels.Float] struct {
	im   *gemmImpl
	y, x []F
	a    F
}

func (t *axpy[F]) run(lo, hi int) { axpyTo(t.im, t.y[lo:hi], t.x[lo:hi], t.a) }

// gatherRows is kernels.Backend's GatherRows on the buffers' slices.
func (*Backend[F]) gatherRows(dst, src []F, idx []int32, w []F, c int) {
	parallelFor(len(idx), rowGrain, gatherRows[F]{dst, src, idx, w, c})
}

type gatherRows[F kernels.Float] struct {
	dst, src []F
	idx      []int32
	w        []F
	c        int
}

func (t *gatherRows[F]) run(lo, hi int) {
	c := t.c
	for i := lo; i < hi; i++ {
		s, o := t.src[int(t.idx[i])*c:int(t.idx[i])*c+c], t.dst[i*c:i*c+c]
		if t.w == nil {
			copy(o, s)
			continue
		}
		for j, x := range s {
			o[j] = t.w[i] * x
		}
	}
}

// gatherSum is kernels.Backend's GatherSum on the buffers' slices.
func (*Backend[F]) gatherSum(dst, src []F, idx []int32, w []F, k, c int) {
	parallelFor(len(idx)/k, rowGrain, gatherSum[F]{dst, src, idx, w, k, c})
}

type gatherSum[F kernels.Float] struct {
	dst, src []F
	idx      []int32
	w        []F
	k, c     int
}

func (t *gatherSum[F]) run(lo, hi int) {
	k, c := t.k, t.c
	for i := lo; i < hi; i++ {
		o := t.dst[i*c : i*c+c]
		for j := i * k; j < i*k+k; j++ {
			s := t.src[int(t.idx[j])*c : int(t.idx[j])*c+c]
			wj := F(1)
			if t.w != nil {
				wj = t.w[j]
			}
			for p, x := range s {
				o[p] += wj * x
			}
		}
	}
}

// rowDots is kernels.Backend's RowDots on the buffers' slices.
func (*Backend[F]) rowDots(out, a, b []F, idx []int32, c int) {
	parallelFor(len(idx), rowGrain, rowDots[F]{out, a, b, idx, c})
}

type rowDots[F kernels.Float] struct {
	out, a, b []F
	idx       []int32
	c         int
}

func (t *rowDots[F]) run(lo, hi int) {
	c := t.c
	for i := lo; i < hi; i++ {
		ar, br := t.a[int(t.idx[i])*c:int(t.idx[i])*c+c], t.b[i*c:i*c+c]
		var s F
		for j, x := range ar {
			s += x * br[j]
		}
		t.out[i] = s
	}
}
