// Package kernels defines the numeric operations the trainer needs, behind one Backend
// interface, so that the model code is written once and runs on any implementation:
// kernels/cpu (Go, with assembly fast paths), later kernels/cuda.
//
// Every operation is generic over the element type. The trainer runs in float32; the
// gradient checks run the very same model code in float64, where finite differences are
// accurate enough to check every hand-written backward pass.
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

// Decoder turns one-byte codes into float32 values: Decode writes dst[r*ldd+j] =
// value(src[r*lds+j]) for r < rows and j < cols. It runs on the calling goroutine: the
// GEMM calling it is already parallel.
type Decoder interface {
	Decode(dst []float32, ldd int, src []uint8, lds, rows, cols int)
}

// Backend is the set of operations the trainer needs.
type Backend[F Float] interface {
	// Name identifies the implementation, e.g. "cpu/avx512" or "cpu/go".
	Name() string

	// MatMul computes c = op(a)·op(b), or c += op(a)·op(b) when accumulate is set.
	//   c: [M, N]
	//   a: [M, K], or [K, M] when transA (op(a) = aᵀ)
	//   b: [K, N], or [N, K] when transB (op(b) = bᵀ)
	MatMul(c, a, b []F, m, k, n int, transA, transB, accumulate bool)
	// MatMulCodes is MatMul with an untransposed b [K, N] kept as one-byte codes that dec
	// turns into values (FP8 operands, kernels/fp8): the GEMM decodes b as it copies it
	// into its packed panels, instead of a pass of its own writing the decoded b to memory
	// and the GEMM reading it back. The result is MatMul's on the decoded b, bit for bit.
	MatMulCodes(c, a []F, b []uint8, dec Decoder, m, k, n int, transA, accumulate bool)

	// The ops below use the model's legend: N rows (tokens, B*T), C row width, V vocab,
	// B sequences of T positions, H query heads, KV key/value heads, D head dim.
	// Ops that transform in place say so; every other op writes or accumulates as stated.

	// Embedding writes out[i,:] = scale * table[ids[i],:]. Rows with ids[i] < 0 are left
	// untouched (image-patch positions, filled by the patch projection instead).
	//   out: [N, C]  table: [V, C]  ids: [N]
	Embedding(out, table []F, ids []int32, c int, scale F)
	// EmbeddingBackward accumulates dtable[ids[i],:] += scale * dout[i,:] for ids[i] >= 0.
	EmbeddingBackward(dtable, dout []F, ids []int32, c int, scale F)

	// RMSNorm writes out[i,:] = x[i,:] * rstd[i] * g, rstd[i] = 1/sqrt(mean(x[i,:]²) + eps).
	//   out, x: [N, C]  rstd: [N]  g: [C]
	RMSNorm(out, rstd, x, g []F, c int, eps float64)
	// RMSNormBackward accumulates dx and dg from dout, using x, g and the forward's rstd.
	RMSNormBackward(dx, dg, dout, x, g, rstd []F, c int)

	// RoPE rotates, in place, each pair (2j, 2j+1) of every head of row i by the angle
	// pos[i] * theta^(-2j/D): x'₂ⱼ = x₂ⱼ·cos - x₂ⱼ₊₁·sin, x'₂ⱼ₊₁ = x₂ⱼ·sin + x₂ⱼ₊₁·cos.
	// cos and sin hold the angles precomputed for positions 0.. (row p, column j).
	//   x: [N, heads*D]  pos: [N]  cos, sin: [maxPos, D/2]
	RoPE(x []F, pos []int32, cos, sin []F, heads, d int)
	// RoPEBackward maps, in place, the gradient w.r.t. rotated values to the gradient
	// w.r.t. the inputs: the inverse rotation.
	RoPEBackward(dx []F, pos []int32, cos, sin []F, heads, d int)

	// Attention is causal, document-masked grouped-query attention: query head h at
	// position t attends to positions s <= t of the same sequence with doc[s] == doc[t],
	// through key/value head h/(H/KV), with logits scale·q·k. It writes out and the
	// logsumexp of each row's logits (the backward recomputes probabilities from it).
	//   out, q: [B*T, H*D]  k, v: [B*T, KV*D]  lse: [B*T, H]  doc: [B*T]
	Attention(out, lse, q, k, v []F, doc []int32, b, t, h, kv, d int, scale F)
	// AttentionBackward accumulates dq, dk, dv from dout.
	AttentionBackward(dq, dk, dv, dout, out, lse, q, k, v []F, doc []int32, b, t, h, kv, d int, scale F)

	// SwiGLU writes out = silu(a) ⊙ u elementwise, silu(a) = a·sigmoid(a), and keeps
	// sig = sigmoid(a) for the backward, which then needs no exponential.
	//   out, sig, a, u: [N]
	SwiGLU(out, sig, a, u []F)
	// SwiGLUBackward accumulates da and du from dout, using the forward's sig.
	SwiGLUBackward(da, du, dout, a, u, sig []F)

	// CrossEntropy writes, per row, lse[i] = logsumexp(logits[i,:]) and
	// loss[i] = lse[i] - logits[i, targets[i]].
	//   loss, lse: [N]  logits: [N, V]  targets: [N]
	CrossEntropy(loss, lse, logits []F, targets []int32, v int)
	// CrossEntropyBackward accumulates dlogits[i,:] += w[i]·(softmax(logits[i,:]) - onehot(targets[i])).
	//   w: [N] per-row weight of the loss (mask / count · upstream scale)
	CrossEntropyBackward(dlogits, logits, lse []F, targets []int32, w []F, v int)

	// Scale multiplies x by s in place.
	Scale(x []F, s F)
	// Axpy accumulates y += a·x.
	Axpy(y, x []F, a F)

	// GatherRows writes dst[i,:] = w[i]·src[idx[i],:] (w nil: weight 1).
	//   dst: [len(idx), C]  w: [len(idx)] or nil
	GatherRows(dst, src []F, idx []int32, w []F, c int)
	// GatherSum accumulates dst[i,:] += Σⱼ w[i·k+j]·src[idx[i·k+j],:] over j < k
	// (w nil: weight 1); the combine step of top-k routing. len(idx) = rows(dst)·k.
	GatherSum(dst, src []F, idx []int32, w []F, k, c int)
	// RowDots writes out[i] = a[idx[i],:]·b[i,:].
	//   out: [len(idx)]  b: [len(idx), C]
	RowDots(out, a, b []F, idx []int32, c int)
}
