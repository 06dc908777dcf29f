package cpu

// Placeholder for the FP8 ops, which move here from kernels/fp8 (the fp8 helper replaces
// this file).

import "github.com/herdml/herd/kernels"

func fp8Table(f kernels.FP8) *[256]float32 { panic("cpu: FP8 not yet moved") }

func decodeRows(dst []float32, ldd int, src []uint8, lds, rows, cols int, scaleInv float32, tab *[256]float32) {
	panic("cpu: FP8 not yet moved")
}

func (be *Backend[F]) Amax(x kernels.Buf[float32]) float32 { panic("cpu: FP8 not yet moved") }

func (be *Backend[F]) Quantize(codes kernels.Buf[uint8], vals, src kernels.Buf[float32], scale float32, f kernels.FP8) float32 {
	panic("cpu: FP8 not yet moved")
}

func (be *Backend[F]) Dequantize(dst kernels.Buf[float32], src kernels.Buf[uint8], scaleInv float32, f kernels.FP8) {
	panic("cpu: FP8 not yet moved")
}

func (be *Backend[F]) QuantizeTiles(q kernels.TileQuant) float32 { panic("cpu: FP8 not yet moved") }

func (be *Backend[F]) DequantizeTiles(d kernels.TileDequant) { panic("cpu: FP8 not yet moved") }
