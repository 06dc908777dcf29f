//go:build !amd64 || purego

package fp8

// encodeSatBulk: no assembly in this build; encodeSat's Go loop does every element.
func encodeSatBulk(p *format, dst []uint8, vals, src []float32, scale float32) (done int, amax uint32) {
	return 0, 0
}
