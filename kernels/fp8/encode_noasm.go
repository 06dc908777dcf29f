//go:build !amd64 || purego

package fp8

// encodeSatBulk and decodeBulk: no assembly in this build; the Go loops do every element.
func encodeSatBulk(p *format, dst []uint8, vals, src []float32, scale float32) (done int, amax uint32) {
	return 0, 0
}

func decodeBulk(dst []float32, src []uint8, scaleInv float32, tab *[256]float32) int { return 0 }
