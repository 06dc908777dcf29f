//go:build amd64 && !purego

package fp8

import "golang.org/x/sys/cpu"

// hasAVX2 selects the assembly loops; tests turn it off to run their Go twins.
var hasAVX2 = cpu.X86.HasAVX2

// encodeSatBulk runs encodeSat's loop on the largest multiple of 8 elements of src with
// AVX2, when the CPU has it, writing vals too unless it is nil. It returns how many
// elements it did and their amax bits.
func encodeSatBulk(p *format, dst []uint8, vals, src []float32, scale float32) (done int, amax uint32) {
	n := len(src) &^ 7
	if !hasAVX2 || n == 0 {
		return 0, 0
	}
	if vals != nil {
		vals = vals[:n]
	}
	return n, encodeSatAVX2(dst[:n], vals, src[:n], scale, &p.enc)
}

// encodeSatAVX2 is encodeSat's loop, without the NaN fix-up, eight elements at a time;
// len(src) is a multiple of 8, len(dst) = len(src), and vals is empty or as long.
//
//go:noescape
func encodeSatAVX2(dst []uint8, vals, src []float32, scale float32, c *encConsts) (amax uint32)

// decodeBulk runs Dequantize's loop on the largest multiple of 8 elements of src with
// AVX2, when the CPU has it, and returns how many it did.
func decodeBulk(dst []float32, src []uint8, scaleInv float32, tab *[256]float32) int {
	n := len(src) &^ 7
	if !hasAVX2 || n == 0 {
		return 0
	}
	decodeAVX2(dst[:n], src[:n], scaleInv, tab)
	return n
}

// decodeAVX2 is Dequantize's loop eight elements at a time; len(src) is a multiple of 8
// and len(dst) = len(src).
//
//go:noescape
func decodeAVX2(dst []float32, src []uint8, scaleInv float32, tab *[256]float32)

// The blockwise recipe's loops (blockwise.go), on the largest multiple of 8 elements of
// src with AVX2 when the CPU has it; each returns how many elements it did.

// encodeVecBulk: dst[i] = Encode(src[i]·scale[i], SatFinite), vals[i] = Decode(dst[i])·k[i].
func encodeVecBulk(p *format, dst []uint8, vals, src, scale, k []float32) int {
	n := len(src) &^ 7
	if !hasAVX2 || n == 0 {
		return 0
	}
	encodeVecAVX2(dst[:n], vals[:n], src[:n], scale[:n], k[:n], &p.enc)
	return n
}

// encodeKBulk: dst[i] = Encode(src[i]·scale, SatFinite), vals[i] = Decode(dst[i])·k.
func encodeKBulk(p *format, dst []uint8, vals, src []float32, scale, k float32) int {
	n := len(src) &^ 7
	if !hasAVX2 || n == 0 {
		return 0
	}
	encodeKAVX2(dst[:n], vals[:n], src[:n], scale, k, &p.enc)
	return n
}

// amaxBulk: the largest |src[i]| as bits.
func amaxBulk(src []float32) (done int, amax uint32) {
	n := len(src) &^ 7
	if !hasAVX2 || n == 0 {
		return 0, 0
	}
	return n, amaxAVX2(src[:n])
}

// amaxColsBulk: a[j] = max(a[j], |src[j]| as bits).
func amaxColsBulk(a []uint32, src []float32) int {
	n := len(src) &^ 7
	if !hasAVX2 || n == 0 {
		return 0
	}
	amaxColsAVX2(a[:n], src[:n])
	return n
}

//go:noescape
func encodeVecAVX2(dst []uint8, vals, src, scale, k []float32, c *encConsts)

//go:noescape
func encodeKAVX2(dst []uint8, vals, src []float32, scale, k float32, c *encConsts)

//go:noescape
func amaxAVX2(src []float32) uint32

//go:noescape
func amaxColsAVX2(a []uint32, src []float32)
