//go:build amd64 && !purego

package cpu

import (
	"math"

	"github.com/herdml/herd/kernels"
	"golang.org/x/sys/cpu"
)

// The instruction sets of the assembly loops, in increasing order: each *Bulk wrapper
// runs the best one at most isa, and the Go loops do what it leaves.
const (
	isaGo = iota
	isaAVX2
	isaAVX512
)

// isa is the best instruction set this CPU runs (AVX-512 Foundation covers every
// instruction of encode_avx512_amd64.s); tests lower it to run the other loops.
var isa = bestISA()

func bestISA() int {
	switch {
	case cpu.X86.HasAVX512F:
		return isaAVX512
	case cpu.X86.HasAVX2:
		return isaAVX2
	}
	return isaGo
}

// bulk is how many leading elements of n the loops of the current isa do: a multiple of
// their step, 16 or 8 floats.
func bulk(n int) int {
	switch isa {
	case isaAVX512:
		return n &^ 15
	case isaAVX2:
		return n &^ 7
	}
	return 0
}

// encodeSatBulk runs encodeSat's loop on the largest multiple of 16 (AVX-512) or 8 (AVX2)
// elements of src, writing vals too unless it is nil. It returns how many elements it did
// and their amax bits.
func encodeSatBulk(p *fp8Format, dst []uint8, vals, src []float32, scale float32) (done int, amax uint32) {
	n := bulk(len(src))
	if n == 0 {
		return 0, 0
	}
	if vals != nil {
		vals = vals[:n]
	}
	if isa == isaAVX512 {
		return n, encodeSatAVX512(dst[:n], vals, src[:n], scale, &p.enc)
	}
	return n, encodeSatAVX2(dst[:n], vals, src[:n], scale, &p.enc)
}

// encodeSatAVX2 is encodeSat's loop, without the NaN fix-up, eight elements at a time;
// len(src) is a multiple of 8, len(dst) = len(src), and vals is empty or as long.
//
//go:noescape
func encodeSatAVX2(dst []uint8, vals, src []float32, scale float32, c *encConsts) (amax uint32)

// decodeBulk runs Dequantize's loop on the largest multiple of 16 or 8 elements of src
// and returns how many it did. tab is one of fp8Formats' tables (AVX-512 decodes by the
// format's decConsts, not by the table; any other table is left to the Go loop).
func decodeBulk(dst []float32, src []uint8, scaleInv float32, tab *[256]float32) int {
	n := bulk(len(src))
	switch {
	case n == 0:
	case isa == isaAVX512:
		c := decConstsOf(tab)
		if c == nil {
			return 0
		}
		decodeAVX512(dst[:n], src[:n], scaleInv, c)
	default:
		decodeAVX2(dst[:n], src[:n], scaleInv, tab)
	}
	return n
}

// decodeRowsBulk decodes the largest multiple of 16 columns of rows rows of codes, row r
// at src[r*lds:] into dst[r*ldd:], with one call of the AVX-512 loop, and returns how many
// columns of each row it did (none with AVX2 or Go, or for a table not one of fp8Formats'):
// decodeRows' panels, 32 codes wide, would otherwise pay decodeBulk's calls and the
// constants' loads for every row.
func decodeRowsBulk(dst []float32, ldd int, src []uint8, lds, rows, cols int, scaleInv float32, tab *[256]float32) int {
	n := cols &^ 15
	if isa != isaAVX512 || n == 0 || rows <= 0 {
		return 0
	}
	c := decConstsOf(tab)
	if c == nil {
		return 0
	}
	// The slices end at the last row's last column, so that an operand too short panics
	// here instead of the loop reading or writing past it.
	decodeRowsAVX512(dst[:(rows-1)*ldd+n], ldd, src[:(rows-1)*lds+n], lds, rows, n, scaleInv, c)
	return n
}

// decConsts are the constants of the arithmetic decode (DECODE16 in
// encode_avx512_amd64.s), laid out for the assembly loop. A normal code's 7 magnitude
// bits put at float32 bit 23-mbits are a float32 of value Decode(c&0x7F)·2^(bias-127), so
// one exact multiply by pow gives the table's value; the other codes (zero, subnormal,
// Inf and NaN), whose bits there would be a float32 subnormal or the wrong value, take
// the table's bits from fix. Adding off to c<<25 moves the Inf and NaN codes below the
// zero and subnormal ones, so that one unsigned compare with lim tells them all apart
// from the normal codes.
type decConsts struct {
	shift uint32      // 2 + mbits: c<<25 shifted right by it is c&0x7F at bit 23-mbits
	pow   float32     // 2^(127-bias)
	off   uint32      // (0x7F - maxCode) << 25
	lim   uint32      // (0x7F - maxCode + 2^mbits) << 25: c<<25 + off below it is not normal
	fix   [16]float32 // decode[c] for the codes above by their low 4 bits: c < 8 or c ≥ 0x78
}

var decConstsFor = [...]decConsts{kernels.E4M3: newDecConsts(&fp8Formats[kernels.E4M3]), kernels.E5M2: newDecConsts(&fp8Formats[kernels.E5M2])}

// decConstsOf is the decConsts of the format whose table tab is, nil for any other table.
func decConstsOf(tab *[256]float32) *decConsts {
	for f := range fp8Formats {
		if tab == &fp8Formats[f].decode {
			return &decConstsFor[f]
		}
	}
	return nil
}

func newDecConsts(p *fp8Format) decConsts {
	c := decConsts{shift: 2 + p.mbits, pow: math.Float32frombits((p.rebias>>p.mbits + 127) << 23),
		off: (0x7F - p.maxCode) << 25, lim: (0x7F - p.maxCode + 1<<p.mbits) << 25}
	copy(c.fix[:8], p.decode[:8])
	copy(c.fix[8:], p.decode[0x78:0x80])
	return c
}

// decodeAVX2 is Dequantize's loop eight elements at a time; len(src) is a multiple of 8
// and len(dst) = len(src).
//
//go:noescape
func decodeAVX2(dst []float32, src []uint8, scaleInv float32, tab *[256]float32)

// The blockwise recipe's loops (blockwise.go), on the largest multiple of 16 or 8
// elements of src; each returns how many elements it did.

// encodeVecBulk: dst[i] = Encode(src[i]·scale[i], SatFinite), vals[i] = Decode(dst[i])·k[i].
func encodeVecBulk(p *fp8Format, dst []uint8, vals, src, scale, k []float32) int {
	n := bulk(len(src))
	switch {
	case n == 0:
	case isa == isaAVX512:
		encodeVecAVX512(dst[:n], vals[:n], src[:n], scale[:n], k[:n], &p.enc)
	default:
		encodeVecAVX2(dst[:n], vals[:n], src[:n], scale[:n], k[:n], &p.enc)
	}
	return n
}

// encodeKBulk: dst[i] = Encode(src[i]·scale, SatFinite), vals[i] = Decode(dst[i])·k.
func encodeKBulk(p *fp8Format, dst []uint8, vals, src []float32, scale, k float32) int {
	n := bulk(len(src))
	switch {
	case n == 0:
	case isa == isaAVX512:
		encodeKAVX512(dst[:n], vals[:n], src[:n], scale, k, &p.enc)
	default:
		encodeKAVX2(dst[:n], vals[:n], src[:n], scale, k, &p.enc)
	}
	return n
}

// amaxBulk: the largest |src[i]| as bits.
func amaxBulk(src []float32) (done int, amax uint32) {
	n := bulk(len(src))
	switch {
	case n == 0:
		return 0, 0
	case isa == isaAVX512:
		return n, amaxAVX512(src[:n])
	}
	return n, amaxAVX2(src[:n])
}

// encodeTilesBulk quantizes the whole 1×fp8Tile tiles at the start of src, one after
// another, with one call of the AVX-512 loop (no AVX2 twin: with AVX2 or Go it does
// nothing): each tile's scale by kernels.FP8Scale's rule with margin 0, its inverse into
// inv[t] and its codes into dst. NaN's code is the caller's to fix. It returns how many
// values it did and their amax bits.
func encodeTilesBulk(p *fp8Format, dst []uint8, inv, src []float32) (done int, amax uint32) {
	n := len(src) / fp8Tile * fp8Tile
	if isa != isaAVX512 || n == 0 {
		return 0, 0
	}
	return n, encodeTilesAVX512(dst[:n], inv[:n/fp8Tile], src[:n], p.max, &p.enc)
}

// decodeTilesBulk writes dst[i] = tab[codes[i]]·inv[t]·mul for the whole 1×fp8Tile tiles
// at the start of codes (t = i / fp8Tile) with one call of the AVX-512 loop, and returns
// how many values it did (none with AVX2 or Go, or for a table not one of fp8Formats').
func decodeTilesBulk(dst []float32, codes []uint8, inv []float32, mul float32, tab *[256]float32) int {
	n := len(codes) / fp8Tile * fp8Tile
	c := decConstsOf(tab)
	if isa != isaAVX512 || n == 0 || c == nil {
		return 0
	}
	decodeTilesAVX512(dst[:n], codes[:n], inv[:n/fp8Tile], mul, c)
	return n
}

// amaxColsBulk: a[j] = max(a[j], |src[j]| as bits).
func amaxColsBulk(a []uint32, src []float32) int {
	n := bulk(len(src))
	switch {
	case n == 0:
	case isa == isaAVX512:
		amaxColsAVX512(a[:n], src[:n])
	default:
		amaxColsAVX2(a[:n], src[:n])
	}
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

// The AVX-512 twins of the loops above (encode_avx512_amd64.s): the same bits, 16
// elements per step, len(src) a multiple of 16.

//go:noescape
func encodeSatAVX512(dst []uint8, vals, src []float32, scale float32, c *encConsts) (amax uint32)

//go:noescape
func decodeAVX512(dst []float32, src []uint8, scaleInv float32, c *decConsts)

//go:noescape
func encodeTilesAVX512(dst []uint8, inv, src []float32, fmax float32, c *encConsts) (amax uint32)

//go:noescape
func decodeRowsAVX512(dst []float32, ldd int, src []uint8, lds, rows, cols int, scaleInv float32, c *decConsts)

//go:noescape
func decodeTilesAVX512(dst []float32, codes []uint8, inv []float32, mul float32, c *decConsts)

//go:noescape
func encodeVecAVX512(dst []uint8, vals, src, scale, k []float32, c *encConsts)

//go:noescape
func encodeKAVX512(dst []uint8, vals, src []float32, scale, k float32, c *encConsts)

//go:noescape
func amaxAVX512(src []float32) uint32

//go:noescape
func amaxColsAVX512(a []uint32, src []float32)
