//go:build !amd64 || purego

package cpu

// encodeSatBulk, decodeBulk and decodeRowsBulk: no assembly in this build; the Go loops do
// every element.
func encodeSatBulk(p *fp8Format, dst []uint8, vals, src []float32, scale float32) (done int, amax uint32) {
	return 0, 0
}

func decodeBulk(dst []float32, src []uint8, scaleInv float32, tab *[256]float32) int { return 0 }

func decodeRowsBulk(dst []float32, ldd int, src []uint8, lds, rows, cols int, scaleInv float32, tab *[256]float32) int {
	return 0
}

// The blockwise recipe's loops: none in assembly here either.
func encodeVecBulk(p *fp8Format, dst []uint8, vals, src, scale, k []float32) int { return 0 }

func encodeKBulk(p *fp8Format, dst []uint8, vals, src []float32, scale, k float32) int { return 0 }

func amaxBulk(src []float32) (done int, amax uint32) { return 0, 0 }

func amaxColsBulk(a []uint32, src []float32) int { return 0 }

func encodeTilesBulk(p *fp8Format, dst []uint8, inv, src []float32) (done int, amax uint32) {
	return 0, 0
}

func decodeTilesBulk(dst []float32, codes []uint8, inv []float32, mul float32, tab *[256]float32) int {
	return 0
}
