package cpu

import (
	"math"

	"github.com/herdml/herd/kernels"
)

// Vector elementwise kernels: the inner loops of the ops, over one row or one chunk. Each
// function below runs its instruction set's kernel when the element type is float32 and
// the kernel set has one (im.vec), and otherwise its own loop, which is the kernel's twin:
// the same arithmetic in the same order, so that the two agree bit for bit, except where
// an exponential is involved (the kernels' exponential is a float32 polynomial, expF's
// another; both are within a few float32 roundings of e^x).

var negInf = math.Inf(-1)

// vecKernels are one instruction set's kernels; see the twins below for what each does.
type vecKernels struct {
	expShift        func(x []float32, shift float32) float32
	scaleMax        func(x []float32, s float32) float32
	scale           func(x []float32, s float32)
	axpy            func(y, x []float32, a float32)
	mulAdd          func(y, a, b []float32, s float32)
	softmaxGrad     func(d, p []float32, dt, s float32)
	swiGLU          func(out, sig, a, u []float32)
	swiGLUBackward  func(da, du, dout, a, u, sig []float32)
	dot3            func(a, b, c []float32) float32
	sumSquares      func(x []float32) float32
	normRow         func(out, x, g []float32, r float32)
	normRowBackward func(dx, d, g, x []float32, r, corr float32)
	adamW           func(p, g, m, v []float32, c AdamWCoeffs)
	rope            func(x, cs, sn []float32, heads int, sign float32)
	sumSquares64    func(x []float32) float64
	dot2            func(a, b []float32) float32
}

// f32 returns s as []float32 when F is float32 and im has vector kernels.
func f32[F kernels.Float](im *gemmImpl, s []F) ([]float32, bool) {
	if im.vec == nil {
		return nil, false
	}
	x, ok := any(s).([]float32)
	return x, ok
}

// as32 converts a slice of F known to be float32.
func as32[F kernels.Float](s []F) []float32 { return any(s).([]float32) }

// expShift replaces each x[i] by e^(x[i]-shift) and returns their sum: the exponential
// pass of every softmax (attention, cross-entropy).
func expShift[F kernels.Float](im *gemmImpl, x []F, shift F) F {
	if x32, ok := f32(im, x); ok {
		return F(im.vec.expShift(x32, float32(shift)))
	}
	var sum F
	for i, v := range x {
		x[i] = expF(v - shift)
		sum += x[i]
	}
	return sum
}

// scaleMax multiplies x by s in place and returns its largest element (-Inf when empty).
func scaleMax[F kernels.Float](im *gemmImpl, x []F, s F) F {
	if x32, ok := f32(im, x); ok {
		return F(im.vec.scaleMax(x32, float32(s)))
	}
	mx := F(negInf)
	for i, v := range x {
		x[i] = v * s
		mx = max(mx, x[i])
	}
	return mx
}

// scaleBy multiplies x by s in place.
func scaleBy[F kernels.Float](im *gemmImpl, x []F, s F) {
	if x32, ok := f32(im, x); ok {
		im.vec.scale(x32, float32(s))
		return
	}
	for i := range x {
		x[i] *= s
	}
}

// axpyTo accumulates y += a·x.
func axpyTo[F kernels.Float](im *gemmImpl, y, x []F, a F) {
	if y32, ok := f32(im, y); ok {
		im.vec.axpy(y32, as32(x), float32(a))
		return
	}
	for i := range y {
		y[i] += a * x[i]
	}
}

// mulAdd accumulates y += a⊙b·s.
func mulAdd[F kernels.Float](im *gemmImpl, y, a, b []F, s F) {
	if y32, ok := f32(im, y); ok {
		im.vec.mulAdd(y32, as32(a), as32(b), float32(s))
		return
	}
	for i := range y {
		y[i] += a[i] * b[i] * s
	}
}

// softmaxGrad turns d, the gradient of the probabilities p of one softmax row, into the
// gradient of its logits times s: d = s·p⊙(d - dt), with dt = Σ p⊙d.
func softmaxGrad[F kernels.Float](im *gemmImpl, d, p []F, dt, s F) {
	if d32, ok := f32(im, d); ok {
		im.vec.softmaxGrad(d32, as32(p), float32(dt), float32(s))
		return
	}
	for i, pv := range p {
		d[i] = s * pv * (d[i] - dt)
	}
}

// swiGLU writes sig = sigmoid(a) and out = a⊙sig⊙u; the twin divides in float64.
func swiGLU[F kernels.Float](im *gemmImpl, out, sig, a, u []F) {
	if out32, ok := f32(im, out); ok {
		im.vec.swiGLU(out32, as32(sig), as32(a), as32(u))
		return
	}
	for i := range out {
		s := F(1 / (1 + float64(expF(-a[i]))))
		sig[i] = s
		out[i] = a[i] * s * u[i]
	}
}

// swiGLUBackward accumulates du += dout⊙a⊙sig and da += dout⊙u⊙sig⊙(1 + a⊙(1-sig)).
func swiGLUBackward[F kernels.Float](im *gemmImpl, da, du, dout, a, u, sig []F) {
	if da32, ok := f32(im, da); ok {
		im.vec.swiGLUBackward(da32, as32(du), as32(dout), as32(a), as32(u), as32(sig))
		return
	}
	for i := range dout {
		x, s := a[i], sig[i]
		du[i] += dout[i] * x * s
		da[i] += dout[i] * u[i] * s * (1 + x*(1-s))
	}
}

// dot2 returns Σ a⊙b, summed in 16 lanes as dot3 does.
func dot2[F kernels.Float](im *gemmImpl, a, b []F) F {
	if a32, ok := f32(im, a); ok {
		return F(im.vec.dot2(a32, as32(b)))
	}
	var lanes [16]F
	for i, v := range a {
		lanes[i%16] += v * b[i]
	}
	return laneSum(&lanes)
}

// dot3 returns Σ a⊙b⊙c, summed in 16 lanes (lane j takes elements j, j+16, ...) that are
// then added by laneSum: the order of a 16-wide vector, here and in the kernels.
func dot3[F kernels.Float](im *gemmImpl, a, b, c []F) F {
	if a32, ok := f32(im, a); ok {
		return F(im.vec.dot3(a32, as32(b), as32(c)))
	}
	var lanes [16]F
	for i, v := range a {
		lanes[i%16] += v * b[i] * c[i]
	}
	return laneSum(&lanes)
}

// sumSquares returns Σ x², summed in 16 lanes as dot3 does.
func sumSquares[F kernels.Float](im *gemmImpl, x []F) F {
	if x32, ok := f32(im, x); ok {
		return F(im.vec.sumSquares(x32))
	}
	var lanes [16]F
	for i, v := range x {
		lanes[i%16] += v * v
	}
	return laneSum(&lanes)
}

// laneSum adds 16 lanes pairwise: lanes 0..7 += 8..15, 0..3 += 4..7, 0,1 += 2,3, 0 += 1.
func laneSum[F kernels.Float](l *[16]F) F {
	for w := 8; w >= 1; w /= 2 {
		for i := range w {
			l[i] += l[i+w]
		}
	}
	return l[0]
}

// normRow writes out = x·r⊙g: one row of RMSNorm.
func normRow[F kernels.Float](im *gemmImpl, out, x, g []F, r F) {
	if out32, ok := f32(im, out); ok {
		im.vec.normRow(out32, as32(x), as32(g), float32(r))
		return
	}
	for j, v := range x {
		out[j] = v * r * g[j]
	}
}

// normRowBackward accumulates dx += r·(d⊙g - x·corr): one row of RMSNorm's input gradient.
func normRowBackward[F kernels.Float](im *gemmImpl, dx, d, g, x []F, r, corr F) {
	if dx32, ok := f32(im, dx); ok {
		im.vec.normRowBackward(dx32, as32(d), as32(g), as32(x), float32(r), float32(corr))
		return
	}
	for j, v := range x {
		dx[j] += r * (d[j]*g[j] - v*corr)
	}
}
