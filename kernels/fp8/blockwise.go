package fp8

import "github.com/herdml/herd/kernels"

// TileSize is the blockwise recipe's tile edge (DeepSeek-V3 §3.3.1, Transformer Engine's
// Float8BlockScaling): activations and gradients are scaled per 1×128 tile along a GEMM's
// reduction dimension, weights per 128×128 block. One outlier then coarsens the
// quantization of 128 values (or 16384 weights) instead of the whole tensor. The
// Backend's QuantizeTiles scales each tile by kernels.FP8Scale.
const TileSize = 128

// tiles is the number of tiles of edge t that cover n.
func tiles(n, t int) int { return (n + t - 1) / t }

// forwardTiles writes the forward GEMM's operands with the blockwise recipe: x in 1×T
// tiles along in (the reduction dimension), decoded into xv and kept as codes with their
// tiles' scales; w in T×T blocks, quantized once per step, decoded into wv with s folded in.
func (l *Linear) forwardTiles(xv, wv, x, w kernels.Buf[float32], s float32) {
	n, in, out := l.n, l.k, l.o
	be := l.sc.be
	l.sc.xv = nil // slot 0 gets x's values times their tile scales
	if l.shared == nil {
		l.x.codes = l.x.codeMem.get(be, n*in)
		l.x.tileInv = l.x.invMem.get(be, n*tiles(in, TileSize))
		l.x.scaleInv = 1
		l.in.quantizeTiles(kernels.TileQuant{Codes: l.x.codes, Vals: xv, Src: x, Inv: l.x.tileInv,
			Rows: n, Cols: in, TR: 1, TC: TileSize, Mul: 1})
		l.xSrc = x
	} else {
		l.checkShared(x)
		sx := &l.shared.x
		be.DequantizeTiles(kernels.TileDequant{Dst: xv, Codes: sx.codes, Inv: sx.tileInv,
			Rows: n, Cols: in, TR: 1, TC: TileSize, Mul: 1, Format: E4M3})
	}
	if l.weightStale(w) {
		l.wq.codes = l.wq.codeMem.get(be, out*in)
		l.wq.tileInv = l.wq.invMem.get(be, tiles(out, TileSize)*tiles(in, TileSize))
		l.wq.scaleInv = 1
		l.w.quantizeTiles(kernels.TileQuant{Codes: l.wq.codes, Src: w, Inv: l.wq.tileInv,
			Rows: out, Cols: in, TR: TileSize, TC: TileSize, Mul: 1})
		l.wSrc, l.wGen = w, l.sc.gen
	}
	l.decodeWeight(wv, s)
}

// decodeWeight writes the weight's blockwise FP8 copy, decoded and times s, into wv.
func (l *Linear) decodeWeight(wv kernels.Buf[float32], s float32) {
	l.sc.be.DequantizeTiles(kernels.TileDequant{Dst: wv, Codes: l.wq.codes, Inv: l.wq.tileInv,
		Rows: l.o, Cols: l.k, TR: TileSize, TC: TileSize, Mul: s, Format: E4M3})
}

// backwardTiles is Backward with the blockwise recipe. Each backward GEMM quantizes its
// operands along its own reduction dimension, as DeepSeek-V3 does: dy in 1×T tiles along
// out for dx = s·dy·w (the weight's T×T blocks serve both GEMMs), and dy again in T×1
// tiles along n for dw = s·dyᵀ·x, where x, kept in 1×T tiles, is decoded and quantized
// again in T×1 tiles (DeepSeek-V3 §3.5.2: dequantize, transpose, re-quantize). With
// Config.GradFP32 dy stays float32 and x is only decoded.
func (l *Linear) backwardTiles(dx, dw, dy kernels.Buf[float32], s float32, accumulate bool) {
	n, in, out := l.n, l.k, l.o
	be, g32 := l.sc.be, l.sc.cfg.GradFP32
	if g32 {
		l.grad.observe(dy)
	}
	if dx.Len() > 0 {
		dyv := dy
		if !g32 {
			dyv = l.sc.workspace(0, n*out)
			l.grad.quantizeTiles(kernels.TileQuant{Vals: dyv, Src: dy, Rows: n, Cols: out, TR: 1, TC: TileSize, Mul: 1})
		}
		wv := l.sc.workspace(1, out*in)
		l.decodeWeight(wv, s)
		be.MatMul(dx.Slice(0, n*in), dyv, wv, n, out, in, false, false, accumulate)
	}
	if dw.Len() > 0 {
		x := l.input()
		xv := l.sc.workspace(1, n*in)
		dyv, xs := dy, s
		if !g32 {
			dyv, xs = l.sc.workspace(0, n*out), 1
			l.grad.quantizeTiles(kernels.TileQuant{Vals: dyv, Src: dy, Rows: n, Cols: out, TR: TileSize, TC: 1, Mul: s})
		}
		be.DequantizeTiles(kernels.TileDequant{Dst: xv, Codes: x.codes, Inv: x.tileInv,
			Rows: n, Cols: in, TR: 1, TC: TileSize, Mul: xs, Format: E4M3})
		if !g32 {
			be.QuantizeTiles(kernels.TileQuant{Vals: xv, Src: xv, Rows: n, Cols: in, TR: TileSize, TC: 1,
				Mul: 1, Format: E4M3, Margin: l.sc.cfg.Margin, Pow2: l.sc.cfg.Pow2})
		}
		be.MatMul(dw.Slice(0, out*in), dyv, xv, out, n, in, true, false, true)
	}
}
