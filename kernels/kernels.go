// Package kernels defines the numeric operations the trainer needs, behind one Backend
// interface, so that the model code is written once and runs on any implementation:
// kernels/cpu (Go, with assembly fast paths), later kernels/cuda.
//
// Every operation is generic over the element type. The trainer runs in float32; the
// gradient checks run the very same model code in float64, where finite differences are
// accurate enough to check every hand-written backward pass.
//
// Every operand is a Buf, a view of memory the backend owns (buf.go): the model's
// parameters, gradients, activations, optimizer moments, FP8 codes and scales and index
// arrays all live in the backend, and host memory is crossed only at the points that
// docs/kernels.md names (the batch upload, scalar read-backs, checkpoints, the collective's
// staging). A backend is a new package and a value of train.device; the model, the
// optimizer and the FP8 recipes are written once against this interface.
//
// Conventions: all matrices are dense and row-major; shapes are given in the doc comment of
// each operation with this legend: M, K, N for GEMM dimensions.
// Backward operations accumulate (+=) into gradient buffers, as in llm.c, so that a
// parameter used in several places sums its contributions.
//
// Results must be deterministic: the same inputs give bit-identical outputs on every run,
// whatever the number of threads, so that training runs are reproducible.
package kernels

// Float is the element type of a backend: float32 for training, float64 for checks.
type Float interface{ ~float32 | ~float64 }

// Backend is the set of operations the trainer needs, and the memory they run on.
// Buffers passed to one call must not overlap unless the op says it works in place.
type Backend[F Float] interface {
	Memory

	// Name identifies the implementation, e.g. "cpu/avx512" or "cpu/go".
	Name() string
	// Device is the train.device value the backend runs on: "cpu", "cuda:0", ...
	Device() string

	// MatMul computes c = op(a)·op(b), or c += op(a)·op(b) when accumulate is set.
	//   c: [M, N]
	//   a: [M, K], or [K, M] when transA (op(a) = aᵀ)
	//   b: [K, N], or [N, K] when transB (op(b) = bᵀ)
	MatMul(c, a, b Buf[F], m, k, n int, transA, transB, accumulate bool)
	// MatMulCodes is MatMul with an untransposed b [K, N] kept as FP8 codes of format f,
	// element (p, j) standing for f's value of b[p·N+j] times scaleInv (FP8 operands,
	// kernels/fp8): the GEMM decodes b as it reads it, instead of a pass of its own writing
	// the decoded b to memory and the GEMM reading it back. The result is MatMul's on the
	// decoded b (each value rounded to float32 once, value·scaleInv), bit for bit.
	MatMulCodes(c, a Buf[F], b Buf[uint8], f FP8, scaleInv float32, m, k, n int, transA, accumulate bool)

	// The ops below use the model's legend: N rows (tokens, B*T), C row width, V vocab,
	// B sequences of T positions, H query heads, KV key/value heads, D head dim.
	// Ops that transform in place say so; every other op writes or accumulates as stated.

	// Embedding writes out[i,:] = scale * table[ids[i],:]. Rows with ids[i] < 0 are left
	// untouched (image-patch positions, filled by the patch projection instead).
	//   out: [N, C]  table: [V, C]  ids: [N]
	Embedding(out, table Buf[F], ids Buf[int32], c int, scale F)
	// EmbeddingBackward accumulates dtable[ids[i],:] += scale * dout[i,:] for ids[i] >= 0.
	EmbeddingBackward(dtable, dout Buf[F], ids Buf[int32], c int, scale F)

	// RMSNorm writes out[i,:] = x[i,:] * rstd[i] * g, rstd[i] = 1/sqrt(mean(x[i,:]²) + eps).
	//   out, x: [N, C]  rstd: [N]  g: [C]
	RMSNorm(out, rstd, x, g Buf[F], c int, eps float64)
	// RMSNormBackward accumulates dx and dg from dout, using x, g and the forward's rstd.
	RMSNormBackward(dx, dg, dout, x, g, rstd Buf[F], c int)

	// RoPE rotates, in place, each pair (2j, 2j+1) of every head of row i by the angle
	// pos[i] * theta^(-2j/D): x'₂ⱼ = x₂ⱼ·cos - x₂ⱼ₊₁·sin, x'₂ⱼ₊₁ = x₂ⱼ·sin + x₂ⱼ₊₁·cos.
	// cos and sin hold the angles precomputed for positions 0.. (row p, column j).
	//   x: [N, heads*D]  pos: [N]  cos, sin: [maxPos, D/2]
	RoPE(x Buf[F], pos Buf[int32], cos, sin Buf[F], heads, d int)
	// RoPEBackward maps, in place, the gradient w.r.t. rotated values to the gradient
	// w.r.t. the inputs: the inverse rotation.
	RoPEBackward(dx Buf[F], pos Buf[int32], cos, sin Buf[F], heads, d int)

	// Attention is causal, document-masked grouped-query attention: query head h at
	// position t attends to positions s <= t of the same sequence with doc[s] == doc[t],
	// through key/value head h/(H/KV), with logits scale·q·k. It writes out and the
	// logsumexp of each row's logits (the backward recomputes probabilities from it).
	//   out, q: [B*T, H*D]  k, v: [B*T, KV*D]  lse: [B*T, H]  doc: [B*T]
	Attention(out, lse, q, k, v Buf[F], doc Buf[int32], b, t, h, kv, d int, scale F)
	// AttentionBackward accumulates dq, dk, dv from dout.
	AttentionBackward(dq, dk, dv, dout, out, lse, q, k, v Buf[F], doc Buf[int32], b, t, h, kv, d int, scale F)

	// SwiGLU writes out = silu(a) ⊙ u elementwise, silu(a) = a·sigmoid(a), and keeps
	// sig = sigmoid(a) for the backward, which then needs no exponential.
	//   out, sig, a, u: [N]
	SwiGLU(out, sig, a, u Buf[F])
	// SwiGLUBackward accumulates da and du from dout, using the forward's sig.
	SwiGLUBackward(da, du, dout, a, u, sig Buf[F])

	// CrossEntropy writes, per row, lse[i] = logsumexp(logits[i,:]) and
	// loss[i] = lse[i] - logits[i, targets[i]].
	//   loss, lse: [N]  logits: [N, V]  targets: [N]
	CrossEntropy(loss, lse, logits Buf[F], targets Buf[int32], v int)
	// CrossEntropyBackward accumulates dlogits[i,:] += w[i]·(softmax(logits[i,:]) - onehot(targets[i]));
	// rows with w[i] = 0 (masked) are left untouched, whatever their logits hold.
	//   w: [N] per-row weight of the loss (mask / count · upstream scale)
	CrossEntropyBackward(dlogits, logits, lse Buf[F], targets Buf[int32], w Buf[F], v int)
	// LossWeights writes w[i] = F(float64(scale)·float64(mask[i]) / tokens), the per-row
	// weights of CrossEntropyBackward, or 0 for every row when tokens is 0.
	//   w, mask: [N]
	LossWeights(w, mask Buf[F], scale F, tokens float64)

	// Scale multiplies x by s in place.
	Scale(x Buf[F], s F)
	// Axpy accumulates y += a·x.
	Axpy(y, x Buf[F], a F)

	// GatherRows writes dst[i,:] = w[i]·src[idx[i],:] (w empty: weight 1).
	//   dst: [len(idx), C]  w: [len(idx)] or empty
	GatherRows(dst, src Buf[F], idx Buf[int32], w Buf[F], c int)
	// GatherSum accumulates dst[i,:] += Σⱼ w[i·k+j]·src[idx[i·k+j],:] over j < k
	// (w empty: weight 1); the combine step of top-k routing. len(idx) = rows(dst)·k.
	GatherSum(dst, src Buf[F], idx Buf[int32], w Buf[F], k, c int)
	// ScatterRows writes dst[idx[i],:] = src[i,:] (image patches into the residual stream);
	// the idx[i] are distinct.
	//   src: [len(idx), C]
	ScatterRows(dst, src Buf[F], idx Buf[int32], c int)
	// RowDots writes out[i] = a[idx[i],:]·b[i,:].
	//   out: [len(idx)]  b: [len(idx), C]
	RowDots(out, a, b Buf[F], idx Buf[int32], c int)

	// Softmax writes out[i,:] = softmax(x[i,:]) for rows rows of cols values, in float64
	// as Route computes its probabilities: the row's max subtracted, exp, each value
	// rounded to F, then divided by the float64 sum of the exps (attention of one query
	// over a KV cache).
	//   out, x: [rows, cols]
	Softmax(out, x Buf[F], rows, cols int)

	// Route is a mixture of experts' top-k routing of N tokens over E experts from the
	// router logits r [N, E], in float64 as the CPU computes it:
	//   - probs[t,:] = softmax(r[t,:]) (max subtracted, exp, divided by the sum),
	//   - slot (t, j), j < k: the j-th largest logit of row t among the experts not picked
	//     yet (ties to the lower index), with gate[t·k+j] = sigmoid(that logit);
	//   - the N·k slots laid out grouped by expert, in slot order within an expert:
	//     counts[e] is how many slots expert e got (a host slice of E: the read-back that
	//     sizes each expert's GEMMs), slotRow[s] the row of slot s in that layout,
	//     rowTok[row] its token and rowGate[row] its gate.
	//   probs: [N, E]  gate, rowGate: [N·k]  slotRow, rowTok: [N·k]
	Route(probs, gate, rowGate Buf[F], slotRow, rowTok Buf[int32], counts []int, r Buf[F], n, e, k int)
	// RouterBackward writes the gradient of the router logits, dr [N, E]: 0 where token t
	// did not pick expert e, else (0 + dgate[p]·g·(1-g)) for its row p (g = rowGate[p]; rows
	// [start[e], start[e+1]) are expert e's, start being the prefix sums of Route's counts);
	// then, when c != 0, the load-balancing loss through the softmax:
	// dr[t,e] += F(c·probs[t,e]·(load[e] - Σ_e' probs[t,e']·load[e'])) in float64, the dot
	// summed in expert order. start and load are host slices of E+1 and E.
	RouterBackward(dr, probs, dgate, rowGate Buf[F], rowTok Buf[int32], start []int, load []float64, c float64, n, e int)

	// The reductions below return host scalars: the read-backs of the loss, the aux loss,
	// the gradient norm and the statistics of the coordinate check.

	// Dot returns Σ float64(a[i])·float64(b[i]), summed in float64 in index order (the
	// masked loss).
	Dot(a, b Buf[F]) float64
	// ColumnSums writes sums[j] = Σ_i float64(x[i,j]) over rows in row order (the mean
	// router probability of each expert). sums is a host slice of cols values.
	//   x: [rows, cols]
	ColumnSums(sums []float64, x Buf[F], rows, cols int)
	// SumSquares returns Σ x[i]² in float64, the same bits on any number of threads: x is
	// cut into blocks of SumSquaresBlock elements, each summed in 8 lanes (lane j takes
	// elements j, j+8, ...; each square rounded to float64 before it is added) added pairwise
	// at the end (lanes 0..3 += 4..7, 0,1 += 2,3, 0 += 1), and the block sums are added in
	// block order (the gradient norm).
	SumSquares(x Buf[F]) float64
	// MeanAbsDiff returns the mean of |a[i] - b[i]| (of |a[i]| when b is empty), each
	// difference taken in float64 and summed in float64 in index order (activation
	// statistics); NaN for an empty a.
	MeanAbsDiff(a, b Buf[F]) float64

	// AdamW applies one AdamW update to the elements of each span, with the coefficients
	// coeffs[span.Group] (see AdamWCoeffs for the arithmetic, done in F). m and v are the
	// float32 moments, laid out as p.
	AdamW(p, g Buf[F], m, v Buf[float32], spans []Span, coeffs []AdamWCoeffs)

	// FP8 (kernels/fp8 runs the recipes on these). An amax is max|x[i]| over the values
	// read, NaN if any is NaN; it is read back as a host scalar, for the amax history.

	// Amax returns the amax of x, 0 for an empty x.
	Amax(x Buf[float32]) float32
	// Quantize writes codes[i] = f's code of src[i]·scale (the product rounded to float32,
	// then to nearest even, saturating at ±max) and vals[i] its decoded value (unscaled),
	// either of which may be empty, and returns the amax of src.
	Quantize(codes Buf[uint8], vals, src Buf[float32], scale float32, f FP8) (amax float32)
	// Dequantize writes dst[i] = f's value of src[i] times scaleInv.
	Dequantize(dst Buf[float32], src Buf[uint8], scaleInv float32, f FP8)
	// QuantizeTiles quantizes a matrix tile by tile (the blockwise recipe and the
	// activation codec): see TileQuant. It returns the amax of the whole matrix.
	QuantizeTiles(q TileQuant) (amax float32)
	// DequantizeTiles decodes what QuantizeTiles wrote: see TileDequant.
	DequantizeTiles(d TileDequant)
}

// SumSquaresBlock is the block of SumSquares' fixed summation order.
const SumSquaresBlock = 1 << 16

// Span is a range [Lo, Hi) of the flat parameter buffers and the index of its
// coefficients in an AdamW call. The optimizer cuts tensors into spans once, at most a
// block long, so that a backend can spread the update over threads.
type Span struct{ Lo, Hi, Group int }

// AdamWCoeffs are the scalars of one AdamW update of one tensor, in float64; the update
// converts each to the parameters' type F once and computes, element by element, with one
// rounding per operation (nothing fused) as torch.optim.AdamW does in F:
//
//	gr = g·GScale
//	m = m·β1 + gr·(1-β1);  v = v·β2 + (gr·gr)·(1-β2)   (m, v read and written as float32)
//	p = p·Decay - StepSize·(m / (sqrt(v)/BC2Sqrt + Eps))
type AdamWCoeffs struct {
	B1, C1   float64 // β1 and 1-β1
	B2, C2   float64 // β2 and 1-β2
	Decay    float64 // 1 - lr·wd
	StepSize float64 // lr / (1-β1ᵗ)
	BC2Sqrt  float64 // sqrt(1-β2ᵗ)
	Eps      float64
	GScale   float64 // gradient factor (the clipping factor), 1 for none
}

// TileQuant quantizes a row-major [Rows, Cols] float32 matrix Src in tiles of TR×TC
// values (1×T, T×1 or T×T, T = kernels/fp8.TileSize): each tile gets the scale
// FP8Scale(its amax, 1, Format, Margin, Pow2) of its own amax (1 for an all-zero or
// non-finite tile). It writes the codes (Codes, [Rows·Cols]), and/or the decoded values
// times Mul/scale (Vals, which may be Src itself: in place), and/or the tiles' inverse
// scales (Inv, row-major over the tiles); an empty buffer is not written. Tiles are at
// most T wide, and a T×1 tiling (the weight gradient's operands) must write Vals.
type TileQuant struct {
	Codes          Buf[uint8]
	Vals, Src, Inv Buf[float32]
	Rows, Cols     int
	TR, TC         int
	Mul            float32
	Format         FP8
	Margin         int
	Pow2           bool
}

// TileDequant writes Dst[i] = Format's value of Codes[i] times Inv[tile of i]·Mul for a
// [Rows, Cols] matrix in TR×TC tiles, Inv row-major over the tiles.
type TileDequant struct {
	Dst        Buf[float32]
	Codes      Buf[uint8]
	Inv        Buf[float32]
	Rows, Cols int
	TR, TC     int
	Mul        float32
	Format     FP8
}
