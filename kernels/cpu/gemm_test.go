package cpu

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
)

// guard fills the bands around every buffer under test; a kernel that writes outside its
// matrix changes them.
const guard = float32(-7777.25)

// available returns the implementations this machine can run, each also with tiny blocks
// so that every block boundary (mc, kc, nc, and edges inside them) is crossed at test
// sizes.
func available(t *testing.T) []*gemmImpl {
	t.Helper()
	var out []*gemmImpl
	for _, im := range impls {
		if !im.available {
			t.Logf("%s: not available on this machine", im.name)
			continue
		}
		small := *im
		small.name += "/small-blocks"
		small.mc, small.kc, small.nc = 2*im.mr, 5, 2*im.nr
		out = append(out, im, &small)
	}
	return out
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = 2*r.Float32() - 1
	}
	return s
}

// guarded returns an n-element slice at an odd offset inside a buffer whose other
// elements are guard, and a check that the guards are intact.
func guarded(n, offset int) (s []float32, intact func() bool) {
	buf := make([]float32, offset+n+7)
	for i := range buf {
		buf[i] = guard
	}
	s = buf[offset : offset+n : offset+n]
	return s, func() bool {
		for i, v := range buf {
			if (i < offset || i >= offset+n) && v != guard {
				return false
			}
		}
		return true
	}
}

func widen(s []float32) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = float64(v)
	}
	return out
}

// checkMatMul runs im on random a, b, c of the given shape and compares every element of c
// with the float64 reference, within a bound on float32 rounding over k terms.
func checkMatMul(t *testing.T, im *gemmImpl, r *rand.Rand, m, k, n int, transA, transB, acc bool) {
	t.Helper()
	a, aOK := guarded(m*k, 1)
	b, bOK := guarded(k*n, 3)
	c, cOK := guarded(m*n, 5)
	copy(a, randSlice(r, m*k))
	copy(b, randSlice(r, k*n))
	copy(c, randSlice(r, m*n))
	want := widen(c)
	refMatMul(want, widen(a), widen(b), m, k, n, transA, transB, acc)
	// bound[i,j] = |c0| + Σ_p |a_ip|·|b_pj|, the scale of the rounding error.
	bound := make([]float64, m*n)
	if acc {
		for i, v := range c {
			bound[i] = math.Abs(float64(v))
		}
	}
	absA, absB := widen(a), widen(b)
	for i := range absA {
		absA[i] = math.Abs(absA[i])
	}
	for i := range absB {
		absB[i] = math.Abs(absB[i])
	}
	refMatMul(bound, absA, absB, m, k, n, transA, transB, true)

	im.matMul(c, a, b, m, k, n, transA, transB, acc)

	if !aOK() || !bOK() || !cOK() {
		t.Fatalf("%dx%dx%d transA=%v transB=%v acc=%v: wrote outside its buffers", m, k, n, transA, transB, acc)
	}
	eps := float64(k+2) * 0x1p-24
	for i := range c {
		if d := math.Abs(float64(c[i]) - want[i]); !(d <= eps*bound[i]) {
			t.Fatalf("%dx%dx%d transA=%v transB=%v acc=%v: c[%d,%d] = %g, want %g (bound %g)",
				m, k, n, transA, transB, acc, i/n, i%n, c[i], want[i], eps*bound[i])
		}
	}
}

// TestMatMul checks every implementation, every transpose combination and both modes
// against the float64 reference at odd sizes.
func TestMatMul(t *testing.T) {
	dims := []int{1, 3, 17, 33, 65, 127}
	shapes := [][3]int{{130, 300, 70}, {29, 515, 3}, {2, 7, 1100}}
	for _, m := range dims {
		shapes = append(shapes, [3]int{m, dims[(m+1)%len(dims)], dims[(m+3)%len(dims)]})
		shapes = append(shapes, [3]int{m, m, m})
	}
	for _, im := range available(t) {
		t.Run(im.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			for _, s := range shapes {
				for _, transA := range []bool{false, true} {
					for _, transB := range []bool{false, true} {
						for _, acc := range []bool{false, true} {
							checkMatMul(t, im, r, s[0], s[1], s[2], transA, transB, acc)
						}
					}
				}
			}
		})
	}
}

// TestMatMulEmptyK: with k = 0 the product is zero, so c is cleared, or left as it is when
// accumulating.
func TestMatMulEmptyK(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, im := range available(t) {
		c := randSlice(r, 6)
		before := slices.Clone(c)
		im.matMul(c, nil, nil, 2, 0, 3, false, false, true)
		if !slices.Equal(c, before) {
			t.Errorf("%s: accumulate with k=0 changed c", im.name)
		}
		im.matMul(c, nil, nil, 2, 0, 3, false, false, false)
		if !slices.Equal(c, make([]float32, 6)) {
			t.Errorf("%s: k=0 left c = %v, want zeros", im.name, c)
		}
	}
}

// TestMatMulCodes: a product whose b is E4M3 codes (NaN codes excepted) times a scale,
// decoded while packed, equals bit for bit the product with b decoded first, for every
// implementation (with tiny blocks too), both modes, a transposed a or not, and edge panels
// in every dimension; the float64 path likewise. c's guards check that nothing is written
// outside it.
func TestMatMulCodes(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	tab, scaleInv := fp8Table(kernels.E4M3), float32(0.37)
	code := func() uint8 { // any code but E4M3's NaNs
		for {
			if c := uint8(r.Uint32()); c&0x7F != 0x7F {
				return c
			}
		}
	}
	shapes := [][3]int{{1, 1, 1}, {17, 5, 33}, {130, 300, 70}, {29, 515, 3}, {64, 256, 96}}
	for _, im := range available(t) {
		for _, s := range shapes {
			m, k, n := s[0], s[1], s[2]
			a, b := randSlice(r, m*k), make([]uint8, k*n)
			bv := make([]float32, k*n)
			for i := range b {
				b[i] = code()
				bv[i] = tab[b[i]] * scaleInv
			}
			for _, transA := range []bool{false, true} {
				for _, acc := range []bool{false, true} {
					c0 := randSlice(r, m*n)
					want := slices.Clone(c0)
					im.matMul(want, a, bv, m, k, n, transA, false, acc)
					c, intact := guarded(m*n, 3)
					copy(c, c0)
					im.gemm(c, a, operandB{codes: b, tab: tab, scaleInv: scaleInv}, m, k, n, transA, false, acc)
					if !intact() {
						t.Fatalf("%s %v transA=%v acc=%v: wrote outside c", im.name, s, transA, acc)
					}
					if !slices.Equal(c, want) {
						t.Fatalf("%s %v transA=%v acc=%v: differs from the product with b decoded first", im.name, s, transA, acc)
					}
				}
			}
		}
	}
	m, k, n := 7, 9, 5
	a, b := make([]float64, m*k), make([]uint8, k*n)
	for i := range a {
		a[i] = r.NormFloat64()
	}
	bv := make([]float64, k*n)
	for i := range b {
		b[i] = code()
		bv[i] = float64(tab[b[i]] * scaleInv)
	}
	be := New[float64]()
	want, got := make([]float64, m*n), make([]float64, m*n)
	be.matMul(want, a, bv, m, k, n, false, false, false)
	be.matMulCodes(got, a, b, kernels.E4M3, scaleInv, m, k, n, false, false)
	if !slices.Equal(got, want) {
		t.Errorf("float64: MatMulCodes = %v, want %v", got, want)
	}
}

// TestMatMulThreadsBitIdentical: the result does not depend on the number of threads.
// The shape is large enough to be split, with edges in every dimension.
func TestMatMulThreadsBitIdentical(t *testing.T) {
	const m, k, n = 203, 517, 181
	r := rand.New(rand.NewPCG(5, 6))
	a, b, c0 := randSlice(r, m*k), randSlice(r, k*n), randSlice(r, m*n)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, im := range available(t) {
		for _, v := range []struct{ transA, transB, acc bool }{{false, false, false}, {true, true, true}, {false, true, true}} {
			var first []float32
			for _, threads := range []int{1, 2, 3} {
				runtime.GOMAXPROCS(threads)
				c := slices.Clone(c0)
				im.matMul(c, a, b, m, k, n, v.transA, v.transB, v.acc)
				if first == nil {
					first = c
				} else if !slices.Equal(c, first) {
					t.Fatalf("%s %+v: %d threads differ from 1 thread", im.name, v, threads)
				}
			}
		}
	}
}

// TestKernelMatchesTwin runs each micro-kernel directly, beside its plain-Go twin, on
// packed panels and a c with a row stride wider than the tile, and each in-place kernel
// (kernelA) on the same A as unpacked rows.
func TestKernelMatchesTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, im := range impls {
		if !im.available {
			continue
		}
		for _, k := range []int{1, 3, 4, 37} {
			for _, add := range []bool{false, true} {
				a, b := randSlice(r, k*im.mr), randSlice(r, k*im.nr)
				ldc := im.nr + 3
				c0 := randSlice(r, im.mr*ldc)
				c, cOK := guarded(len(c0), 1)
				copy(c, c0)
				twin := slices.Clone(c0)
				im.kernel(k, a, b, c, ldc, add)
				kernelGo(im.mr, im.nr, k, a, b, twin, ldc, add)
				if !cOK() {
					t.Fatalf("%s k=%d: wrote outside c", im.name, k)
				}
				for i := range c {
					if i%ldc >= im.nr {
						if c[i] != c0[i] {
							t.Fatalf("%s k=%d: wrote c[%d] past the tile", im.name, k, i)
						}
						continue
					}
					if d := math.Abs(float64(c[i] - twin[i])); d > float64(k+2)*0x1p-23 {
						t.Fatalf("%s k=%d add=%v: c[%d] = %g, twin %g", im.name, k, add, i, c[i], twin[i])
					}
				}
				if im.kernelA == nil {
					continue
				}
				// The in-place kernel on the same A as mr rows lda apart: the packed
				// kernel's bits, and no read past the tile's rows (the slice ends there).
				lda := k + 5
				rows := make([]float32, (im.mr-1)*lda+k)
				for p := range k {
					for i := range im.mr {
						rows[i*lda+p] = a[p*im.mr+i]
					}
				}
				cA, cAOK := guarded(len(c0), 1)
				copy(cA, c0)
				im.kernelA(k, rows, lda, b, cA, ldc, add)
				if !cAOK() || !slices.Equal(cA, c) {
					t.Fatalf("%s k=%d add=%v: the in-place kernel gives %v, the packed one %v", im.name, k, add, cA, c)
				}
			}
		}
	}
}

// TestMatMulFloat64Transposes checks the generic path's transpose and accumulate handling
// against explicitly transposed copies, in float64 as the gradient checks use it.
func TestMatMulFloat64Transposes(t *testing.T) {
	const m, k, n = 5, 7, 3
	r := rand.New(rand.NewPCG(9, 10))
	a, b := widen(randSlice(r, m*k)), widen(randSlice(r, k*n))
	at, bt := make([]float64, m*k), make([]float64, k*n)
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			at[p*m+i] = a[i*k+p]
		}
	}
	for p := 0; p < k; p++ {
		for j := 0; j < n; j++ {
			bt[j*k+p] = b[p*n+j]
		}
	}
	be := New[float64]()
	want := make([]float64, m*n)
	be.matMul(want, a, b, m, k, n, false, false, false)
	for _, v := range []struct {
		a, b           []float64
		transA, transB bool
	}{{at, b, true, false}, {a, bt, false, true}, {at, bt, true, true}} {
		got := make([]float64, m*n)
		be.matMul(got, v.a, v.b, m, k, n, v.transA, v.transB, false)
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-12 {
				t.Fatalf("transA=%v transB=%v: c[%d] = %g, want %g", v.transA, v.transB, i, got[i], want[i])
			}
		}
		be.matMul(got, v.a, v.b, m, k, n, v.transA, v.transB, true)
		for i := range got {
			if math.Abs(got[i]-2*want[i]) > 1e-12 {
				t.Fatalf("accumulate transA=%v transB=%v: c[%d] = %g, want %g", v.transA, v.transB, i, got[i], 2*want[i])
			}
		}
	}
	if be.Name() != "cpu/go" {
		t.Errorf("float64 backend is %q, want cpu/go", be.Name())
	}
}

// TestPickImpl: HERD_KERNELS picks an implementation by name; an unknown one is a user
// error naming what is allowed, and the best kernel runs instead.
func TestPickImpl(t *testing.T) {
	best, err := pickImpl("")
	if err != nil || !best.available {
		t.Fatalf(`pickImpl("") = %v, %v`, best, err)
	}
	if im, err := pickImpl("go"); err != nil || im != goImpl {
		t.Fatalf(`pickImpl("go") = %v, %v; want the Go kernel`, im, err)
	}
	im, err := pickImpl("avx9000")
	if im != best || !usererr.Is(err) {
		t.Fatalf(`pickImpl("avx9000") = %v, %v; want the best kernel and a user error`, im, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "HERD_KERNELS") || !strings.Contains(msg, "go") {
		t.Errorf("error %q does not name the variable and the allowed kernels", msg)
	}
	t.Logf("active kernel: %s", active.name)
	be := &Backend[float32]{gemm: goImpl}
	if be.Name() != "cpu/go" {
		t.Errorf("Name() = %q, want cpu/go", be.Name())
	}
}

// TestPackRowsMatchesTwin: each fast packing gives packA's plain-Go result exactly,
// including the columns past the last group of 16 and panels of fewer than mr rows, and
// writes nothing outside the panel.
func TestPackRowsMatchesTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, im := range impls {
		if !im.available || (im.packRows == nil && im.packRowsT == nil && im.packColsT == nil && im.packCols == nil) {
			continue
		}
		const m, k, i0, p0 = 31, 70, 3, 5
		for _, kb := range []int{1, 16, 37, 65} {
			for _, trans := range []bool{false, true} {
				a := randSlice(r, m*k)
				plain := *im
				plain.packRows, plain.packRowsT = nil, nil
				for _, rows := range []int{im.mr, 1, im.mr - 3} {
					want := make([]float32, kb*im.mr)
					plain.packA(want, a, m, k, i0, rows, p0, kb, trans)
					got, intact := guarded(kb*im.mr, 3)
					im.packA(got, a, m, k, i0, rows, p0, kb, trans)
					if !intact() {
						t.Fatalf("%s kb=%d trans=%v rows=%d: wrote outside the panel", im.name, kb, trans, rows)
					}
					if !slices.Equal(got, want) {
						t.Fatalf("%s kb=%d trans=%v rows=%d: packed panel differs from the plain-Go packing", im.name, kb, trans, rows)
					}
				}

				// B: columns [j0, j0+nr) of op(b), b stored [n, k] when trans.
				const n, j0 = 70, 2
				b := randSlice(r, (k+1)*n)
				plain.packColsT, plain.packCols = nil, nil
				want := make([]float32, kb*im.nr)
				plain.packB(want, b, k, n, p0, kb, j0, im.nr, trans)
				got, intact := guarded(kb*im.nr, 3)
				im.packB(got, b, k, n, p0, kb, j0, im.nr, trans)
				if !intact() || !slices.Equal(got, want) {
					t.Fatalf("%s kb=%d trans=%v: B panel differs from the plain-Go packing or overran", im.name, kb, trans)
				}
			}
		}
	}
}

// rowsShareL1Sets counts the rows of a 14-row panel that land on one L1 set: every row for
// k a multiple of 1024 (4 KiB rows), every other row for 512, every fourth for 256 and 768,
// none shared for a k that is not a multiple of 16.
func TestRowsShareL1Sets(t *testing.T) {
	for _, c := range []struct{ k, want int }{{1024, 14}, {2048, 14}, {3072, 14}, {512, 7}, {1536, 7}, {256, 4}, {768, 4}, {128, 2}, {1025, 1}, {100, 1}} {
		if got := rowsShareL1Sets(c.k, 14); got != c.want {
			t.Errorf("k=%d: %d rows share a set, want %d", c.k, got, c.want)
		}
	}
}
