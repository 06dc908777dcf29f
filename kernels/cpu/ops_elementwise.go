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

// SwiGLU: see kernels.Backend. sigmoid(a) = 1/(1+e^-a), divided in float64.
func (*Backend[F]) SwiGLU(out, sig, a, u []F) {
	parallelFor(len(out), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			s := F(1 / (1 + float64(expF(-a[i]))))
			sig[i] = s
			out[i] = a[i] * s * u[i]
		}
	})
}

// SwiGLUBackward: see kernels.Backend. With s = sigmoid(a): silu(a) = a·s and
// silu'(a) = s·(1 + a·(1-s)).
func (*Backend[F]) SwiGLUBackward(da, du, dout, a, u, sig []F) {
	parallelFor(len(dout), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x, s := a[i], sig[i]
			du[i] += dout[i] * x * s
			da[i] += dout[i] * u[i] * s * (1 + x*(1-s))
		}
	})
}

// CrossEntropy: see kernels.Backend. The row sum of exponentials runs in F after
// subtracting the row maximum.
func (*Backend[F]) CrossEntropy(loss, lse, logits []F, targets []int32, v int) {
	parallelFor(len(loss), rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := logits[i*v : i*v+v]
			mx := row[0]
			for _, x := range row {
				mx = max(mx, x)
			}
			var sum F
			for _, x := range row {
				sum += expF(x - mx)
			}
			lse[i] = mx + F(math.Log(float64(sum)))
			loss[i] = lse[i] - row[targets[i]]
		}
	})
}

// CrossEntropyBackward: see kernels.Backend. Rows with weight 0 are skipped.
func (*Backend[F]) CrossEntropyBackward(dlogits, logits, lse []F, targets []int32, w []F, v int) {
	parallelFor(len(lse), rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if w[i] == 0 {
				continue
			}
			row, drow := logits[i*v:i*v+v], dlogits[i*v:i*v+v]
			for j, x := range row {
				drow[j] += w[i] * expF(x-lse[i])
			}
			drow[targets[i]] -= w[i]
		}
	})
}

// Scale: see kernels.Backend.
func (*Backend[F]) Scale(x []F, s F) {
	parallelFor(len(x), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x[i] *= s
		}
	})
}

// Axpy: see kernels.Backend.
func (*Backend[F]) Axpy(y, x []F, a F) {
	parallelFor(len(y), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y[i] += a * x[i]
		}
	})
}

// GatherRows: see kernels.Backend.
func (*Backend[F]) GatherRows(dst, src []F, idx []int32, w []F, c int) {
	parallelFor(len(idx), rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			s, o := src[int(idx[i])*c:int(idx[i])*c+c], dst[i*c:i*c+c]
			if w == nil {
				copy(o, s)
				continue
			}
			for j, x := range s {
				o[j] = w[i] * x
			}
		}
	})
}

// GatherSum: see kernels.Backend.
func (*Backend[F]) GatherSum(dst, src []F, idx []int32, w []F, k, c int) {
	parallelFor(len(idx)/k, rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			o := dst[i*c : i*c+c]
			for j := i * k; j < i*k+k; j++ {
				s := src[int(idx[j])*c : int(idx[j])*c+c]
				wj := F(1)
				if w != nil {
					wj = w[j]
				}
				for p, x := range s {
					o[p] += wj * x
				}
			}
		}
	})
}

// RowDots: see kernels.Backend.
func (*Backend[F]) RowDots(out, a, b []F, idx []int32, c int) {
	parallelFor(len(idx), rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ar, br := a[int(idx[i])*c:int(idx[i])*c+c], b[i*c:i*c+c]
			var s F
			for j, x := range ar {
				s += x * br[j]
			}
			out[i] = s
		}
	})
}
