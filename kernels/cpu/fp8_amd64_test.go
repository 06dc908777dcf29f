//go:build amd64 && !purego

package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/herdml/herd/kernels"
)

func init() {
	isas := map[string]int{"go": isaGo, "avx2": isaAVX2, "avx512": isaAVX512}
	for _, name := range []string{"avx512", "avx2"} {
		if isas[name] <= isa {
			asmLoops = append(asmLoops, name)
		}
	}
	useLoops = func(name string) { isa = isas[name] }
}

// step is how many elements one step of the current isa's loops takes; the *Bulk wrappers
// must do the largest multiple of it and leave the rest to the Go code.
func step() int { return [...]int{isaGo: 0, isaAVX2: 8, isaAVX512: 16}[isa] }

func bulkLen(n int) int {
	if step() == 0 {
		return 0
	}
	return n - n%step()
}

// loopCases are the loops' inputs for format f: every bfloat16 bit pattern (every sign,
// exponent, Inf and NaN, with the top mantissa bits) and f's midpoints with their ±1 and
// ±2 ulp neighbours (the sticky bits), shuffled so that each step's lanes mix subnormal,
// normal, overflowing and special values; wantSat[i] are the exact reference's kernels.SatFinite
// codes of xs[i]·loopScales[s]. The exact reference takes a second per format, so the
// tests share them.
type loopCases struct {
	xs      []float32
	wantSat [2][]uint8
}

var loopScales = [2]float32{1, 3.7e-3} // 3.7e-3: products with all 24 significand bits

var loopCasesOf = [...]func() loopCases{
	kernels.E4M3: sync.OnceValue(func() loopCases { return newLoopCases(kernels.E4M3) }),
	kernels.E5M2: sync.OnceValue(func() loopCases { return newLoopCases(kernels.E5M2) }),
}

func newLoopCases(f kernels.FP8) loopCases {
	r := newRef(f)
	xs := r.midpoints()
	for h := range 1 << 16 {
		xs = append(xs, math.Float32frombits(uint32(h)<<16))
	}
	rng := rand.New(rand.NewPCG(7, uint64(f)))
	rng.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
	c := loopCases{xs: xs}
	for s, scale := range loopScales {
		c.wantSat[s] = make([]uint8, len(xs))
		for i, x := range xs {
			c.wantSat[s][i], _ = r.encode(f, x*scale)
		}
	}
	return c
}

// plainAmax is the largest |x| of xs as bits, NaN patterns above all.
func plainAmax(xs []float32) uint32 {
	var m uint32
	for _, x := range xs {
		m = max(m, math.Float32bits(x)&0x7FFFFFFF)
	}
	return m
}

// encodeSat, with each instruction set's loop and the Go code after it, on the inputs of
// loopCases at 16 offsets (tails of 0 to 15 elements, unaligned starts), with and without
// vals: the reference's codes, Decode of them as vals, and the largest |x| as bits; and
// amaxBits, the blockwise recipe's amax, the same maximum.
func TestEncodeSatEveryBFloat16(t *testing.T) {
	for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
		c := loopCasesOf[f]()
		p := &fp8Formats[f]
		t.Run(f.String(), func(t *testing.T) {
			forEachImpl(t, func(t *testing.T) {
				for s, scale := range loopScales {
					for off := range 16 {
						src, want := c.xs[off:], c.wantSat[s][off:]
						wantAmax := plainAmax(src)
						if m := amaxBits(src); m != wantAmax {
							t.Fatalf("%v off %d: amaxBits %#08x, want %#08x", f, off, m, wantAmax)
						}
						for _, withVals := range []bool{false, true} {
							codes, v := make([]uint8, len(src)), []float32(nil)
							if withVals {
								v = make([]float32, len(src))
							}
							name := fmt.Sprintf("%v ×%g off %d vals %v", f, scale, off, withVals)
							if m := p.encodeSat(codes, v, src, scale); m != wantAmax {
								t.Fatalf("%s: amax %#08x, want %#08x", name, m, wantAmax)
							}
							for i, x := range src {
								if codes[i] != want[i] {
									t.Fatalf("%s: [%d] %g [%#08x]: code %#02x, want %#02x", name, i, x, math.Float32bits(x), codes[i], want[i])
								}
								if v != nil && math.Float32bits(v[i]) != math.Float32bits(f.Decode(want[i])) {
									t.Fatalf("%s: [%d] %g: value %g, want %g", name, i, x, v[i], f.Decode(want[i]))
								}
							}
						}
					}
				}
			})
		})
	}
}

// The blockwise loops and the decode loops called directly, on loopCases' inputs without NaN
// (their callers keep NaN from them) at 16 lengths: each does exactly the largest
// multiple of its step (none in Go), as the reference computes it, and writes nothing
// beyond; amaxBulk and amaxColsBulk see the NaNs too.
func TestBulkLoopsAgainstReference(t *testing.T) {
	for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
		c := loopCasesOf[f]()
		var xs []float32
		var want [2][]uint8
		for i, x := range c.xs {
			if x == x {
				xs = append(xs, x)
				want[0], want[1] = append(want[0], c.wantSat[0][i]), append(want[1], c.wantSat[1][i])
			}
		}
		p := &fp8Formats[f]
		scale, k := make([]float32, len(xs)), make([]float32, len(xs))
		for i := range xs {
			scale[i], k[i] = loopScales[i%2], float32(1+i%7)/8
		}
		t.Run(f.String(), func(t *testing.T) {
			forEachImpl(t, func(t *testing.T) {
				for d := range 16 {
					n := len(xs) - d
					codes, vals := make([]uint8, n), make([]float32, n)
					untouched := func(name string, done int) {
						if done != bulkLen(n) {
							t.Fatalf("%v %s, length %d: did %d elements, want %d", f, name, n, done, bulkLen(n))
						}
						for i := done; i < n; i++ {
							if codes[i] != 0xAA || math.Float32bits(vals[i]) != 0xAAAAAAAA {
								t.Fatalf("%v %s, length %d: element %d of the tail written", f, name, n, i)
							}
						}
					}
					fill := func() {
						for i := range codes {
							codes[i], vals[i] = 0xAA, math.Float32frombits(0xAAAAAAAA)
						}
					}

					fill()
					done := encodeKBulk(p, codes, vals, xs[:n], loopScales[1], 0.75)
					untouched("encodeKBulk", done)
					for i := range done {
						if codes[i] != want[1][i] || math.Float32bits(vals[i]) != math.Float32bits(f.Decode(want[1][i])*0.75) {
							t.Fatalf("%v encodeKBulk [%d] %g: %#02x %g, want %#02x %g", f, i, xs[i], codes[i], vals[i], want[1][i], f.Decode(want[1][i])*0.75)
						}
					}

					fill()
					done = encodeVecBulk(p, codes, vals, xs[:n], scale, k)
					untouched("encodeVecBulk", done)
					for i := range done {
						w := want[i%2][i]
						if codes[i] != w || math.Float32bits(vals[i]) != math.Float32bits(f.Decode(w)*k[i]) {
							t.Fatalf("%v encodeVecBulk [%d] %g×%g: %#02x %g, want %#02x %g", f, i, xs[i], scale[i], codes[i], vals[i], w, f.Decode(w)*k[i])
						}
					}

					src := c.xs[:len(c.xs)-d]
					done, m := amaxBulk(src)
					if done != bulkLen(len(src)) || m != plainAmax(src[:done]) {
						t.Fatalf("%v amaxBulk, length %d: did %d, amax %#08x; want %d, %#08x", f, len(src), done, m, bulkLen(len(src)), plainAmax(src[:done]))
					}

					a, a0 := make([]uint32, n), make([]uint32, n)
					for i := range a0 {
						a0[i] = math.Float32bits(float32(i % 9)) // below and above the inputs
					}
					copy(a, a0)
					done = amaxColsBulk(a, src[:n])
					if done != bulkLen(n) {
						t.Fatalf("%v amaxColsBulk, length %d: did %d, want %d", f, n, done, bulkLen(n))
					}
					for i := range a {
						w := a0[i]
						if i < done {
							w = max(w, math.Float32bits(src[i])&0x7FFFFFFF)
						}
						if a[i] != w {
							t.Fatalf("%v amaxColsBulk [%d] %g over %#08x: %#08x, want %#08x", f, i, src[i], a0[i], a[i], w)
						}
					}
				}
			})
		})
	}
}

// decodeScales are the scale-backs the decode tests multiply by: 1, powers of two, values
// with all 24 significand bits, ones that make the products subnormal (1e-38, 2^-100) or
// overflow to Inf (1e30), and negative, zero, infinite and NaN ones, whose products'
// signs and NaN bits the loops must get as Go does.
var decodeScales = []float32{1, 0x1p-3, 0x1p-100, 0.3, 0.37, 1e-38, 1e30, -0.37, 0,
	float32(math.Inf(1)), float32(math.NaN())}

// mulBits is bits(a·k) as the loops compute it: a NaN a gives its own NaN, made quiet,
// even when k is NaN too (x86 returns the first operand's NaN, and the loops put the
// decoded value first; Go's compiler may put either first, so a·k in Go is no reference
// there).
func mulBits(a, k float32) uint32 {
	if a != a {
		return math.Float32bits(a) | 0x400000
	}
	return math.Float32bits(a * k)
}

// everyCode is each code at position c+r for r = 0..16: every code in every lane of a step.
func everyCode() []uint8 {
	codes := make([]uint8, 0, 17*256)
	for r := range 17 {
		for c := range 256 {
			codes = append(codes, uint8(c+r))
		}
	}
	return codes
}

// decodeBulk on every code of both formats in every position of a step, NaN and Inf
// codes included, at 16 lengths and each of decodeScales: tab[c]·k bit for bit (the same
// NaN bits too), and nothing written beyond the elements it reports.
func TestDecodeBulkEveryCode(t *testing.T) {
	codes := everyCode()
	forEachImpl(t, func(t *testing.T) {
		for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
			tab := &fp8Formats[f].decode
			for _, k := range decodeScales {
				for d := range 16 {
					n := len(codes) - d
					dst := make([]float32, n)
					for i := range dst {
						dst[i] = math.Float32frombits(0xAAAAAAAA)
					}
					done := decodeBulk(dst, codes[:n], k, tab)
					if done != bulkLen(n) {
						t.Fatalf("%v, length %d: did %d, want %d", f, n, done, bulkLen(n))
					}
					for i, c := range codes[:n] {
						want := mulBits(tab[c], k)
						if i >= done {
							want = 0xAAAAAAAA
						}
						if got := math.Float32bits(dst[i]); got != want {
							t.Fatalf("%v ×%g, length %d: [%d] code %#02x gives %#08x, want %#08x", f, k, n, i, c, got, want)
						}
					}
				}
			}
		}
	})
}

// decodeTilesBulk on every code of both formats in every position of a tile, each tile
// with its own scale-back from decodeScales, times mul: tab[c]·(inv[t]·mul) bit for bit,
// and nothing written beyond the whole tiles.
func TestDecodeTilesBulkEveryCode(t *testing.T) {
	codes := everyCode()
	nt := len(codes) / fp8Tile
	inv := make([]float32, nt+1)
	for i := range inv {
		inv[i] = decodeScales[i%len(decodeScales)]
	}
	forEachImpl(t, func(t *testing.T) {
		for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
			tab := &fp8Formats[f].decode
			for _, mul := range []float32{1, 0.37} {
				dst := make([]float32, len(codes))
				for i := range dst {
					dst[i] = math.Float32frombits(0xAAAAAAAA)
				}
				done := decodeTilesBulk(dst, codes, inv, mul, tab)
				if want := nt * fp8Tile; isa == isaAVX512 && done != want || isa != isaAVX512 && done != 0 {
					t.Fatalf("%v: did %d values of %d", f, done, len(codes))
				}
				for i, c := range codes {
					want := mulBits(tab[c], inv[i/fp8Tile]*mul)
					if i >= done {
						want = 0xAAAAAAAA
					}
					if got := math.Float32bits(dst[i]); got != want {
						t.Fatalf("%v ×%g×%g: [%d] code %#02x gives %#08x, want %#08x", f, inv[i/fp8Tile], mul, i, c, got, want)
					}
				}
			}
		}
	})
}

// decodeRowLoop is decodeRows as it was before decodeRowsBulk: decodeScaled on each row.
func decodeRowLoop(dst []float32, ldd int, src []uint8, lds, rows, cols int, scaleInv float32, tab *[256]float32) {
	for r := range rows {
		decodeScaled(dst[r*ldd:r*ldd+cols], src[r*lds:r*lds+cols], scaleInv, tab)
	}
}

// decodeRows on GEMM panels of rows × cols codes with strides larger than cols (both
// formats, each of decodeScales, every code present in each shape): the same bits as
// decodeScaled row by row, and nothing written past each row's cols.
func TestDecodeRowsMatchesRowLoop(t *testing.T) {
	const guard = 0xAAAAAAAA
	codes := everyCode()
	forEachImpl(t, func(t *testing.T) {
		for _, rows := range []int{1, 5, 256} {
			for _, cols := range []int{16, 32, 48, 17, 31} {
				lds, ldd := cols+13, cols+5
				// Enough panels that their codes, taken one after another from
				// everyCode, run through 256 in a row: every code.
				panels := (256 + rows*cols - 1) / (rows * cols)
				src := make([]uint8, rows*lds)
				got, want := make([]float32, rows*ldd), make([]float32, rows*ldd)
				for p := range panels {
					for i := range src {
						src[i] = 0x7F // NaN in both formats: between the rows, never decoded
					}
					for r := range rows {
						for j := range cols {
							src[r*lds+j] = codes[(p*rows*cols+r*cols+j)%len(codes)]
						}
					}
					for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
						tab := &fp8Formats[f].decode
						for _, k := range decodeScales {
							for i := range got {
								got[i], want[i] = math.Float32frombits(guard), math.Float32frombits(guard)
							}
							decodeRows(got, ldd, src, lds, rows, cols, k, tab)
							decodeRowLoop(want, ldd, src, lds, rows, cols, k, tab)
							for r := range rows {
								for j := range ldd {
									g, w := math.Float32bits(got[r*ldd+j]), math.Float32bits(want[r*ldd+j])
									if j >= cols {
										w = guard
									}
									if g != w {
										t.Fatalf("%v ×%g, %d×%d panel %d: [%d,%d] gives %#08x, want %#08x",
											f, k, rows, cols, p, r, j, g, w)
									}
								}
							}
						}
					}
				}
			}
		}
	})
}

// BenchmarkDecodeRows decodes a GEMM panel of FP8 codes as MatMulCodes' packing does (256
// rows × 32 columns of a 768-wide matrix into a 32-wide panel) by decodeScaled row by row
// ("loop", decodeRows before decodeRowsBulk) and by decodeRows ("panel"), side by side
// under the same load; the codes are a quantized N(0,1) tensor, as in training.
func BenchmarkDecodeRows(b *testing.B) {
	if isa != isaAVX512 {
		b.Skip("decodeRowsBulk runs only with AVX-512: decodeRows is the row loop")
	}
	const rows, cols, lds = 256, 32, 768
	src := make([]uint8, rows*lds)
	quantizeHost(src, nil, randTensor(rows*lds, 3, 1), kernels.E4M3.Max()/4, kernels.E4M3)
	dst := make([]float32, rows*cols)
	tab, k := fp8Table(kernels.E4M3), float32(0.37)
	for _, run := range []struct {
		name   string
		decode func()
	}{
		{"loop", func() { decodeRowLoop(dst, cols, src, lds, rows, cols, k, tab) }},
		{"panel", func() { decodeRows(dst, cols, src, lds, rows, cols, k, tab) }},
	} {
		b.Run(run.name, func(b *testing.B) {
			for b.Loop() {
				run.decode()
			}
			b.ReportMetric(float64(rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gvalues/s")
		})
	}
}

// BenchmarkQuantizeISA runs the codec benchmarks with each instruction set's loops in
// turn, so that one run shows them side by side under the same load: Quantize,
// QuantizeDecoded, Dequantize, Tile (kernels/fp8.TileCodec's row tiles) and Tiles (the blockwise
// recipe's tilings with values: encodeK and encodeVec, amaxBits and amaxCols).
func BenchmarkQuantizeISA(b *testing.B) {
	if len(asmLoops) == 0 {
		b.Skip("this CPU runs none of the assembly loops")
	}
	defer useLoops(asmLoops[0])
	for _, bench := range []struct {
		name string
		run  func(*testing.B)
	}{
		{"Quantize", BenchmarkQuantize}, {"QuantizeDecoded", BenchmarkQuantizeDecoded},
		{"Dequantize", BenchmarkDequantize}, {"Tile", BenchmarkTile}, {"Tiles", benchTiles},
	} {
		b.Run(bench.name, func(b *testing.B) {
			for _, name := range asmLoops {
				useLoops(name)
				b.Run(name, bench.run)
			}
		})
	}
}

// benchTiles quantizes BenchmarkTile's 2048 × 768 tensor with codes and values in 1×128
// and 128×1 tiles (E5M2, as the blockwise recipe's gradient); GB/s counts the floats read
// once and the codes and values written.
func benchTiles(b *testing.B) {
	const rows, cols = 2048, 768
	src := randTensor(rows*cols, 1, 1)
	codes, vals := make([]uint8, rows*cols), make([]float32, rows*cols)
	for _, sh := range [][2]int{{1, fp8Tile}, {fp8Tile, 1}} {
		b.Run(fmt.Sprintf("%dx%d", sh[0], sh[1]), func(b *testing.B) {
			for b.Loop() {
				fp8be.QuantizeTiles(kernels.TileQuant{Codes: kernels.HostBuf(codes), Vals: kernels.HostBuf(vals),
					Src: kernels.HostBuf(src), Rows: rows, Cols: cols, TR: sh[0], TC: sh[1], Mul: 1, Format: kernels.E5M2})
			}
			b.ReportMetric(float64(9*rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkDecodeL1 runs decodeBulk with each instruction set on 4096 codes, 16 KiB of
// values that stay in L1 with their codes, so that it times the loop rather than memory:
// a quantized N(0,1) tensor (normal codes, as in training) and codes that are all
// subnormal, of each format (a float multiply with a subnormal input could take a
// microcode assist).
func BenchmarkDecodeL1(b *testing.B) {
	if len(asmLoops) == 0 {
		b.Skip("this CPU runs none of the assembly loops")
	}
	defer useLoops(asmLoops[0])
	const n = 4096
	x := randTensor(n, 3, 1)
	dst := make([]float32, n)
	for _, f := range []kernels.FP8{kernels.E4M3, kernels.E5M2} {
		normal, sub := make([]uint8, n), make([]uint8, n)
		quantizeHost(normal, nil, x, f.Max()/4, f)
		for i := range sub {
			sub[i] = uint8(1+i%(1<<fp8Formats[f].mbits-1)) | uint8(i&1)<<7
		}
		for _, codes := range []struct {
			name string
			c    []uint8
		}{{"normal", normal}, {"subnormal", sub}} {
			for _, name := range asmLoops {
				b.Run(fmt.Sprintf("%v/%s/%s", f, codes.name, name), func(b *testing.B) {
					useLoops(name)
					for b.Loop() {
						decodeBulk(dst, codes.c, 0.37, &fp8Formats[f].decode)
					}
					b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gvalues/s")
				})
			}
		}
	}
}
