package cpu

// The Backend's methods on kernels.Buf: a CPU buffer is a Go slice, so each method hands
// its buffers' slices to the slice-based implementation beside which its doc comment
// sits (MatMul to matMul, RMSNorm to rmsNorm, ...), and the CPU path costs nothing for
// the seam. Memory is Go memory.

import (
	"math"
	"unsafe"

	"github.com/herdml/herd/kernels"
)

// Device is "cpu".
func (*Backend[F]) Device() string { return "cpu" }

// AllocBytes returns n zeroed bytes aligned to 64 (a cache line and an AVX-512 vector).
// They are allocated as uint64s, so that the garbage collector does not scan them.
func (*Backend[F]) AllocBytes(n int) kernels.Buf[uint8] {
	if n == 0 {
		return kernels.Buf[uint8]{}
	}
	words := make([]uint64, (n+63)/8+8)
	b := unsafe.Slice((*uint8)(unsafe.Pointer(&words[0])), len(words)*8)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & 63)
	return kernels.HostBuf(b[off : off+n])
}

// UploadBytes copies src into dst.
func (*Backend[F]) UploadBytes(dst kernels.Buf[uint8], src []byte) { copy(dst.Host(), src) }

// DownloadBytes copies src into dst.
func (*Backend[F]) DownloadBytes(dst []byte, src kernels.Buf[uint8]) { copy(dst, src.Host()) }

// CopyBytes copies src into dst.
func (*Backend[F]) CopyBytes(dst, src kernels.Buf[uint8]) { copy(dst.Host(), src.Host()) }

// ZeroBytes clears b.
func (*Backend[F]) ZeroBytes(b kernels.Buf[uint8]) { clear(b.Host()) }

func (be *Backend[F]) MatMul(c, a, b kernels.Buf[F], m, k, n int, transA, transB, accumulate bool) {
	be.matMul(c.Host(), a.Host(), b.Host(), m, k, n, transA, transB, accumulate)
}

func (be *Backend[F]) MatMulCodes(c, a kernels.Buf[F], b kernels.Buf[uint8], f kernels.FP8, scaleInv float32, m, k, n int, transA, accumulate bool) {
	be.matMulCodes(c.Host(), a.Host(), b.Host(), f, scaleInv, m, k, n, transA, accumulate)
}

func (be *Backend[F]) Embedding(out, table kernels.Buf[F], ids kernels.Buf[int32], c int, scale F) {
	be.embedding(out.Host(), table.Host(), ids.Host(), c, scale)
}

func (be *Backend[F]) EmbeddingBackward(dtable, dout kernels.Buf[F], ids kernels.Buf[int32], c int, scale F) {
	be.embeddingBackward(dtable.Host(), dout.Host(), ids.Host(), c, scale)
}

func (be *Backend[F]) RMSNorm(out, rstd, x, g kernels.Buf[F], c int, eps float64) {
	be.rmsNorm(out.Host(), rstd.Host(), x.Host(), g.Host(), c, eps)
}

func (be *Backend[F]) RMSNormBackward(dx, dg, dout, x, g, rstd kernels.Buf[F], c int) {
	be.rmsNormBackward(dx.Host(), dg.Host(), dout.Host(), x.Host(), g.Host(), rstd.Host(), c)
}

func (be *Backend[F]) RoPE(x kernels.Buf[F], pos kernels.Buf[int32], cos, sin kernels.Buf[F], heads, d int) {
	be.roPE(x.Host(), pos.Host(), cos.Host(), sin.Host(), heads, d)
}

func (be *Backend[F]) RoPEBackward(dx kernels.Buf[F], pos kernels.Buf[int32], cos, sin kernels.Buf[F], heads, d int) {
	be.roPEBackward(dx.Host(), pos.Host(), cos.Host(), sin.Host(), heads, d)
}

func (be *Backend[F]) Attention(out, lse, q, k, v kernels.Buf[F], doc kernels.Buf[int32], b, t, h, kv, d int, scale F) {
	be.attention(out.Host(), lse.Host(), q.Host(), k.Host(), v.Host(), doc.Host(), b, t, h, kv, d, scale)
}

func (be *Backend[F]) AttentionBackward(dq, dk, dv, dout, out, lse, q, k, v kernels.Buf[F], doc kernels.Buf[int32], b, t, h, kv, d int, scale F) {
	be.attentionBackward(dq.Host(), dk.Host(), dv.Host(), dout.Host(), out.Host(), lse.Host(), q.Host(), k.Host(), v.Host(), doc.Host(), b, t, h, kv, d, scale)
}

func (be *Backend[F]) SwiGLU(out, sig, a, u kernels.Buf[F]) {
	be.swiGLU(out.Host(), sig.Host(), a.Host(), u.Host())
}

func (be *Backend[F]) SwiGLUBackward(da, du, dout, a, u, sig kernels.Buf[F]) {
	be.swiGLUBackward(da.Host(), du.Host(), dout.Host(), a.Host(), u.Host(), sig.Host())
}

func (be *Backend[F]) CrossEntropy(loss, lse, logits kernels.Buf[F], targets kernels.Buf[int32], v int) {
	be.crossEntropy(loss.Host(), lse.Host(), logits.Host(), targets.Host(), v)
}

func (be *Backend[F]) CrossEntropyBackward(dlogits, logits, lse kernels.Buf[F], targets kernels.Buf[int32], w kernels.Buf[F], v int) {
	be.crossEntropyBackward(dlogits.Host(), logits.Host(), lse.Host(), targets.Host(), w.Host(), v)
}

func (be *Backend[F]) Scale(x kernels.Buf[F], s F) { be.scale(x.Host(), s) }

func (be *Backend[F]) Axpy(y, x kernels.Buf[F], a F) { be.axpy(y.Host(), x.Host(), a) }

func (be *Backend[F]) GatherRows(dst, src kernels.Buf[F], idx kernels.Buf[int32], w kernels.Buf[F], c int) {
	be.gatherRows(dst.Host(), src.Host(), idx.Host(), orNil(w.Host()), c)
}

func (be *Backend[F]) GatherSum(dst, src kernels.Buf[F], idx kernels.Buf[int32], w kernels.Buf[F], k, c int) {
	be.gatherSum(dst.Host(), src.Host(), idx.Host(), orNil(w.Host()), k, c)
}

func (be *Backend[F]) RowDots(out, a, b kernels.Buf[F], idx kernels.Buf[int32], c int) {
	be.rowDots(out.Host(), a.Host(), b.Host(), idx.Host(), c)
}

// LossWeights: see kernels.Backend. One row takes a few operations: a plain loop.
func (*Backend[F]) LossWeights(w, mask kernels.Buf[F], scale F, tokens float64) {
	ws := w.Host()
	for i, v := range mask.Host() {
		ws[i] = 0
		if tokens > 0 {
			ws[i] = F(float64(scale) * float64(v) / tokens)
		}
	}
}

// ScatterRows: see kernels.Backend. It moves a few rows (the image patches): a plain loop.
func (*Backend[F]) ScatterRows(dst, src kernels.Buf[F], idx kernels.Buf[int32], c int) {
	d, s := dst.Host(), src.Host()
	for i, at := range idx.Host() {
		copy(d[int(at)*c:int(at)*c+c], s[i*c:i*c+c])
	}
}

// Dot: see kernels.Backend. A sum in index order is one thread's.
func (*Backend[F]) Dot(a, b kernels.Buf[F]) float64 {
	bs := b.Host()
	var sum float64
	for i, v := range a.Host() {
		sum += float64(v) * float64(bs[i])
	}
	return sum
}

// ColumnSums: see kernels.Backend.
func (*Backend[F]) ColumnSums(sums []float64, x kernels.Buf[F], rows, cols int) {
	xs := x.Host()
	for j := range cols {
		var s float64
		for i := range rows {
			s += float64(xs[i*cols+j])
		}
		sums[j] = s
	}
}

// MeanAbsDiff: see kernels.Backend.
func (*Backend[F]) MeanAbsDiff(a, b kernels.Buf[F]) float64 {
	bs := b.Host()
	sum := 0.0
	for i, v := range a.Host() {
		d := float64(v)
		if bs != nil {
			d -= float64(bs[i])
		}
		sum += math.Abs(d)
	}
	return sum / float64(a.Len())
}

// SumSquares: see kernels.Backend. The blocks run on the pool, each summed by
// sumSquares64 (8 float64 lanes in a fixed order), into recycled scratch so that a
// training step allocates nothing; the block sums are added in order.
func (*Backend[F]) SumSquares(x kernels.Buf[F]) float64 {
	xs := x.Host()
	n := (len(xs) + kernels.SumSquaresBlock - 1) / kernels.SumSquaresBlock
	scratch := take[blockSums]()
	defer release(scratch)
	if cap(*scratch) < n {
		*scratch = make(blockSums, n)
	}
	sums := (*scratch)[:n]
	parallelFor(n, 1, sumSquaresTask[F]{xs, sums})
	var total float64
	for _, s := range sums {
		total += s
	}
	return total
}

// blockSums is SumSquares' scratch: one float64 per block.
type blockSums []float64

// sumSquaresTask sums the squares of blocks of x into sums, one per block.
type sumSquaresTask[F kernels.Float] struct {
	x    []F
	sums blockSums
}

func (t *sumSquaresTask[F]) run(lo, hi int) {
	const block = kernels.SumSquaresBlock
	for b := lo; b < hi; b++ {
		t.sums[b] = sumSquares64(t.x[b*block : min((b+1)*block, len(t.x))])
	}
}

// AdamW: see kernels.Backend. The spans run on the pool, each by adamW (AVX-512 where the
// CPU has it: the same bits as the plain loop).
func (*Backend[F]) AdamW(p, g kernels.Buf[F], m, v kernels.Buf[float32], spans []kernels.Span, coeffs []kernels.AdamWCoeffs) {
	parallelFor(len(spans), 1, adamWTask[F]{p.Host(), g.Host(), m.Host(), v.Host(), spans, coeffs})
}

// adamWTask is one AdamW call's loop over its spans.
type adamWTask[F kernels.Float] struct {
	p, g   []F
	m, v   []float32
	spans  []kernels.Span
	coeffs []kernels.AdamWCoeffs
}

func (t *adamWTask[F]) run(lo, hi int) {
	for _, s := range t.spans[lo:hi] {
		adamW(t.p[s.Lo:s.Hi], t.g[s.Lo:s.Hi], t.m[s.Lo:s.Hi], t.v[s.Lo:s.Hi], t.coeffs[s.Group])
	}
}
