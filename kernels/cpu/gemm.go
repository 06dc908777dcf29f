package cpu

import (
	"math/bits"
	"os"
	"runtime"
	"strings"

	"github.com/herdml/herd/internal/usererr"
)

// float32 GEMM, blocked and packed as in BLIS (Goto & van de Geijn, "Anatomy of
// high-performance matrix multiplication"):
//
//	for jc over N in blocks of nc:            B block stays in L3
//	  for pc over K in blocks of kc:          pack op(b)[pc:pc+kc, jc:jc+nc] into nr-wide panels
//	    for ic over M in blocks of mc:        pack op(a)[ic:ic+mc, pc:pc+kc] into mr-tall panels (L2)
//	      for jr over the B panels:           one kc×nr B panel stays in L1
//	        for ir over the A panels:
//	          micro-kernel: the mr×nr tile of c (+)= A panel · B panel
//
// Packing reads op(a) and op(b) through their strides, so the transposes are never
// materialised, and zero-pads the edges so the micro-kernel always runs a full tile.
//
// Parallelism: for each (jc, pc) step the threads pack B panels, then compute chunks of
// mc rows by a group of B panels (the ic and jr loops), taking the next chunk from a
// shared counter (parallelChunks).
//
// Determinism: an element of c is the sum over the kc blocks in increasing order, each
// block summed by the micro-kernel over p in increasing order. The blocking depends on the
// shapes only, and the parallel split only decides which goroutine computes a tile, never
// how, so results are bit-identical for any thread count.

// gemmImpl is one float32 kernel set: a GEMM micro-kernel and the blocking around it, and
// the vector elementwise kernels of the same instruction set.
// The implementations live in a small registry (impls), as Go's crypto keeps its
// assembly and generic variants, so that tests can run every one on this machine.
type gemmImpl struct {
	name       string
	available  bool // the CPU can run it and its assembly is built
	mr, nr     int  // micro-tile: rows of op(a) by columns of op(b)
	mc, kc, nc int  // block sizes; mc is a multiple of mr, nc of nr

	// kernel computes the mr×nr tile acc[i][j] = Σ_p a[p*mr+i]·b[p*nr+j] for p < k over
	// packed panels, and stores c[i*ldc+j] = acc[i][j], or adds it to c when add is set.
	kernel func(k int, a, b, c []float32, ldc int, add bool)
	// kernelA, if set, is kernel reading mr full rows of an untransposed a in place, row i
	// at a[i*lda:], instead of a packed panel: the same sums in the same order. With it an
	// untransposed A is not packed: packing reads and writes all of A for every product, a
	// large share when N is small (a training step's products have N = 256 to 768).
	kernelA func(k int, a []float32, lda int, b, c []float32, ldc int, add bool)

	// packRows, if set, is a fast packA for up to mr rows of an untransposed a, 16 columns
	// per group: dst[p*mr+i] = a[i*lda+p] for i < rows and 0 for rows <= i < mr, p <
	// 16*groups. packA does the rest.
	packRows func(dst, a []float32, lda, groups, rows int)
	// packRowsT, if set, is the same for up to mr rows of a transposed a: dst[p*mr+i] =
	// a[p*lda+i] for i < rows and 0 for rows <= i < mr, p < kb (attention packs many
	// panels of fewer rows).
	packRowsT func(dst, a []float32, lda, kb, rows int)
	// packColsT, if set, is a fast packB for nr full columns of a transposed b, 16 rows per
	// group: dst[p*nr+j] = b[j*ldb+p] for p < 16*groups. packB does the rest.
	packColsT func(dst, b []float32, ldb, groups int)

	// packCols, if set, is a fast packB for nr full columns of an untransposed b:
	// dst[p*nr+j] = b[p*ldb+j] for p < kb.
	packCols func(dst, b []float32, ldb, kb int)

	// vec holds the vector elementwise kernels of the same instruction set; nil runs
	// their plain-Go twins (vec.go).
	vec *vecKernels
}

// goImpl runs everywhere: the packed driver around the plain-Go micro-kernel.
var goImpl = &gemmImpl{
	name: "go", available: true,
	mr: 4, nr: 16, mc: 64, kc: 256, nc: 2048,
	kernel: func(k int, a, b, c []float32, ldc int, add bool) { kernelGo(4, 16, k, a, b, c, ldc, add) },
}

// impls lists every implementation, best first; archImpls are the assembly ones built for
// this architecture (none with the purego build tag).
var impls = append(archImpls(), goImpl)

// active is the implementation New uses: HERD_KERNELS's if set and valid, else the best
// available. envErr keeps the complaint about a bad HERD_KERNELS for CheckEnv.
var active, envErr = pickImpl(os.Getenv("HERD_KERNELS"))

// pickImpl returns the implementation named by want ("" = the best available).
func pickImpl(want string) (*gemmImpl, error) {
	var names []string
	for _, im := range impls {
		if !im.available {
			continue
		}
		if want == "" || want == im.name {
			return im, nil
		}
		names = append(names, im.name)
	}
	best, _ := pickImpl("")
	return best, usererr.New("HERD_KERNELS", "no kernel %q on this machine; allowed: %s (or unset for the best)",
		want, strings.Join(names, ", "))
}

// CheckEnv reports a HERD_KERNELS value that names no kernel available on this machine;
// New then runs the best one instead. Commands call it at start to tell the user.
func CheckEnv() error { return envErr }

// parallelMinFlops is the work below which a GEMM runs on the calling goroutine: it takes
// a few microseconds, about what starting and joining goroutines costs.
const parallelMinFlops = 1 << 18

// matMul is kernels.Backend's MatMul in float32, by this implementation.
func (g *gemmImpl) matMul(c, a, b []float32, m, k, n int, transA, transB, accumulate bool) {
	g.gemm(c, a, operandB{vals: b}, m, k, n, transA, transB, accumulate)
}

// operandB is the B of a product: float32 values, or FP8 codes with the decode table of
// their format and the factor each decoded value is multiplied by
// (kernels.Backend.MatMulCodes; untransposed only).
type operandB struct {
	vals     []float32
	codes    []uint8
	tab      *[256]float32
	scaleInv float32
}

// gemm is matMul for either kind of B.
func (g *gemmImpl) gemm(c, a []float32, b operandB, m, k, n int, transA, transB, accumulate bool) {
	if m <= 0 || n <= 0 {
		return
	}
	if k <= 0 {
		if !accumulate {
			clear(c[:m*n])
		}
		return
	}
	threads := runtime.GOMAXPROCS(0)
	if 2*m*n*k < parallelMinFlops {
		threads = 1
	}
	// Blocks as equal as the alignment allows, so that no short last block leaves a thread
	// idle or pays the load and store of c for little work. Multiples of 16 in k suit the
	// packing's register transposes.
	mc, kc := balance(m, g.mc, g.mr), balance(k, g.kc, 16)
	rowBlocks := (m + mc - 1) / mc
	bbuf := getBuf[float32](min(k, kc) * roundUp(min(n, g.nc), g.nr))
	defer putBuf(bbuf)
	aPanels := (m + g.mr - 1) / g.mr
	var abuf *[]float32 // A packed for all rows, when groups > 1
	defer func() {
		if abuf != nil {
			putBuf(abuf)
		}
	}()
	for jc := 0; jc < n; jc += g.nc {
		nb := min(g.nc, n-jc)
		nPanels := (nb + g.nr - 1) / g.nr
		// Chunks of work: mc rows by a group of B panels. Several per thread, so that the
		// threads stay busy when one is delayed; the rows are not split finer than mc
		// because every group packs its rows of A again.
		groups := min(nPanels, max(1, (4*threads+rowBlocks-1)/rowBlocks))
		if threads == 1 {
			groups = 1
		}
		perGroup := (nPanels + groups - 1) / groups
		groups = (nPanels + perGroup - 1) / perGroup
		for pc := 0; pc < k; pc += kc {
			kb := min(kc, k-pc)
			bp := (*bbuf)[:kb*nPanels*g.nr]
			parallelChunks(nPanels, threads, packTask{g: g, bp: bp, b: b, k: k, n: n, pc: pc, kb: kb, jc: jc, nb: nb, transB: transB})
			var ap []float32
			if groups > 1 && (transA || g.kernelA == nil) {
				// Several groups of B panels use each row block: pack A once for all.
				if abuf == nil {
					abuf = getBuf[float32](aPanels * min(k, kc) * g.mr)
				}
				ap = (*abuf)[:aPanels*kb*g.mr]
				parallelChunks(aPanels, threads, packATask{g: g, ap: ap, a: a, m: m, k: k, pc: pc, kb: kb, transA: transA})
			}
			parallelChunks(rowBlocks*groups, threads, block{g: g, c: c, a: a, bp: bp, m: m, k: k, n: n, mc: mc, pc: pc, kb: kb,
				jc: jc, nb: nb, transA: transA, add: accumulate || pc > 0, groups: groups, perGroup: perGroup, nPanels: nPanels, ap: ap})
		}
	}
}

// packTask packs the B panels of one (jc, pc) step of matMul, one panel per index.
type packTask struct {
	g                    *gemmImpl
	bp                   []float32
	b                    operandB
	k, n, pc, kb, jc, nb int
	transB               bool
}

func (t *packTask) run(lo, hi int) {
	nr := t.g.nr
	for q := lo; q < hi; q++ {
		dst, j0, cols := t.bp[q*t.kb*nr:(q+1)*t.kb*nr], t.jc+q*nr, min(nr, t.nb-q*nr)
		if t.b.codes != nil {
			packBCodes(dst, t.b, t.n, t.pc, t.kb, j0, cols, nr)
			continue
		}
		t.g.packB(dst, t.b.vals, t.k, t.n, t.pc, t.kb, j0, cols, t.transB)
	}
}

// packATask packs rows [0, m) of op(a) for one pc step of matMul, one mr-tall panel per
// index, panel r at ap[r*kb*mr:].
type packATask struct {
	g            *gemmImpl
	ap, a        []float32
	m, k, pc, kb int
	transA       bool
}

func (t *packATask) run(lo, hi int) {
	packAPanels(t.g, t.ap[lo*t.kb*t.g.mr:], t.a, t.m, t.k, lo, hi, t.pc, t.kb, t.transA)
}

// packAPanels packs the mr-tall panels [lo, hi) of op(a)'s columns [pc, pc+kb) into dst,
// one after another.
func packAPanels(g *gemmImpl, dst, a []float32, m, k, lo, hi, pc, kb int, transA bool) {
	mr := g.mr
	for r := lo; r < hi; r++ {
		d := dst[(r-lo)*kb*mr : (r-lo+1)*kb*mr]
		g.packA(d, a, m, k, r*mr, min(mr, m-r*mr), pc, kb, transA)
	}
}

// block is one (jc, pc) step of matMul: B is packed; the micro-tiles remain, in chunks of
// mc rows by a group of perGroup B panels, chunk i = (row block i/groups, group i%groups).
type block struct {
	g                         *gemmImpl
	c, a, bp                  []float32
	m, k, n, mc               int
	pc, kb, jc, nb            int
	transA, add               bool
	groups, perGroup, nPanels int
	ap                        []float32 // A packed for all rows, when several groups share it; else nil
}

func (t *block) run(lo, hi int) {
	for i := lo; i < hi; i++ {
		q := i % t.groups * t.perGroup
		t.tiles(i/t.groups*t.mc, q, min(q+t.perGroup, t.nPanels))
	}
}

// tiles packs rows [ic, ic+mc) of A and computes their micro-tiles with B panels [jlo, jhi).
// An untransposed A is read in place by kernelA where the implementation has one; only a
// last panel of fewer than mr rows is packed then.
func (t *block) tiles(ic, jlo, jhi int) {
	g := t.g
	mr, nr := g.mr, g.nr
	abuf := getBuf[float32](t.mc*t.kb + mr*nr)
	defer putBuf(abuf)
	ap, tmp := (*abuf)[:t.mc*t.kb], (*abuf)[t.mc*t.kb:]
	mb := min(t.mc, t.m-ic)
	panels := (mb + mr - 1) / mr
	inPlace := !t.transA && g.kernelA != nil && rowsShareL1Sets(t.k, mr) <= 4
	switch {
	case inPlace && mb%mr != 0:
		last := panels - 1
		packAPanels(g, ap[last*t.kb*mr:], t.a, t.m, t.k, ic/mr+last, ic/mr+panels, t.pc, t.kb, false)
	case inPlace:
	case t.ap != nil:
		ap = t.ap[ic*t.kb:]
	default:
		packAPanels(g, ap, t.a, t.m, t.k, ic/mr, ic/mr+panels, t.pc, t.kb, t.transA)
	}
	for q := jlo; q < jhi; q++ {
		j0 := t.jc + q*nr
		cols := min(nr, t.jc+t.nb-j0)
		bq := t.bp[q*t.kb*nr : (q+1)*t.kb*nr]
		for r := 0; r < panels; r++ {
			i0 := ic + r*mr
			rows := min(mr, t.m-i0)
			aq := ap[r*t.kb*mr : (r+1)*t.kb*mr]
			direct := inPlace && rows == mr
			if rows == mr && cols == nr {
				if direct {
					g.kernelA(t.kb, t.a[i0*t.k+t.pc:], t.k, bq, t.c[i0*t.n+j0:], t.n, t.add)
				} else {
					g.kernel(t.kb, aq, bq, t.c[i0*t.n+j0:], t.n, t.add)
				}
				continue
			}
			// Edge tile: compute the full tile aside, keep the valid part.
			if direct {
				g.kernelA(t.kb, t.a[i0*t.k+t.pc:], t.k, bq, tmp, nr, false)
			} else {
				g.kernel(t.kb, aq, bq, tmp, nr, false)
			}
			for i := 0; i < rows; i++ {
				dst := t.c[(i0+i)*t.n+j0 : (i0+i)*t.n+j0+cols]
				src := tmp[i*nr : i*nr+cols]
				if t.add {
					for j, v := range src {
						dst[j] += v
					}
				} else {
					copy(dst, src)
				}
			}
		}
	}
}

// rowsShareL1Sets is how many of mr consecutive rows of a row-major matrix with k float32
// columns fall on one set of a 4 KiB-way L1 data cache (AVX-512 Intel cores: 32 KiB, 8
// ways of 64 sets of 64 bytes): rows whose starts differ by a multiple of 4 KiB map their
// columns to the same sets. kernelA streams mr rows at once, so where this exceeds about
// half the ways (k a multiple of 512, as in 1024³ or 2048³) the rows evict each other's
// lines before each is used up, and packing A first is faster (bench/gemm.sh measures
// both shapes).
func rowsShareL1Sets(k, mr int) int {
	const way = 4096
	stride := k * 4 % way
	if stride == 0 {
		return mr
	}
	period := way / gcd(stride, way) // rows until the sets repeat
	return (mr + period - 1) / period
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// packA copies rows [i0, i0+rows) and columns [p0, p0+kb) of op(a) into dst, one mr-tall
// panel with element (i, p) at dst[p*mr+i]; rows past rows are zero. op(a) is [m, k]: a
// itself, or the transpose of a stored [k, m].
func (g *gemmImpl) packA(dst, a []float32, m, k, i0, rows, p0, kb int, trans bool) {
	mr := g.mr
	if !trans && g.packRows != nil && kb >= 16 {
		// The transpose of a whole panel, in registers; the columns left over below.
		done := kb / 16 * 16
		g.packRows(dst, a[i0*k+p0:], k, kb/16, rows)
		dst, p0, kb = dst[done*mr:], p0+done, kb-done
	}
	if trans && g.packRowsT != nil {
		g.packRowsT(dst, a[p0*m+i0:], m, kb, rows)
		return
	}
	if trans {
		// A loop, not copy: runs of mr elements are too short to pay for a memmove call.
		for p := 0; p < kb; p++ {
			d := dst[p*mr : p*mr+mr]
			copy(d, a[(p0+p)*m+i0:(p0+p)*m+i0+rows])
			clear(d[rows:])
		}
		return
	}
	for i := 0; i < mr; i++ {
		if i >= rows {
			for p := 0; p < kb; p++ {
				dst[p*mr+i] = 0
			}
			continue
		}
		for p, v := range a[(i0+i)*k+p0 : (i0+i)*k+p0+kb] {
			dst[p*mr+i] = v
		}
	}
}

// packB copies rows [p0, p0+kb) and columns [j0, j0+cols) of op(b) into dst, one nr-wide
// panel with element (p, j) at dst[p*nr+j]; columns past cols are zero. op(b) is [k, n]: b
// itself, or the transpose of b stored [n, k].
func (g *gemmImpl) packB(dst, b []float32, k, n, p0, kb, j0, cols int, trans bool) {
	nr := g.nr
	if trans && cols == nr && g.packColsT != nil && kb >= 16 {
		done := kb / 16 * 16
		g.packColsT(dst, b[j0*k+p0:], k, kb/16)
		dst, p0, kb = dst[done*nr:], p0+done, kb-done
	}
	if !trans && cols == nr && g.packCols != nil {
		g.packCols(dst, b[p0*n+j0:], n, kb)
		return
	}
	if !trans {
		for p := 0; p < kb; p++ {
			d := dst[p*nr : p*nr+nr]
			copy(d, b[(p0+p)*n+j0:(p0+p)*n+j0+cols])
			clear(d[cols:])
		}
		return
	}
	for j := 0; j < nr; j++ {
		if j >= cols {
			for p := 0; p < kb; p++ {
				dst[p*nr+j] = 0
			}
			continue
		}
		for p, v := range b[(j0+j)*k+p0 : (j0+j)*k+p0+kb] {
			dst[p*nr+j] = v
		}
	}
}

// packBCodes is packB for an untransposed b kept as codes: rows [p0, p0+kb) and columns
// [j0, j0+cols) of b [k, n], decoded straight into the nr-wide panel; columns past cols
// are zero.
func packBCodes(dst []float32, b operandB, n, p0, kb, j0, cols, nr int) {
	decodeRows(dst, nr, b.codes[p0*n+j0:], n, kb, cols, b.scaleInv, b.tab)
	if cols < nr {
		for p := 0; p < kb; p++ {
			clear(dst[p*nr+cols : (p+1)*nr])
		}
	}
}

// kernelGo is the plain-Go micro-kernel and the twin of every assembly one: for p < k,
// acc[i][j] += a[p*mr+i]·b[p*nr+j]; then c[i*ldc+j] = acc[i][j] (or += when add).
// Go does not fuse the multiply-add on amd64, so it may differ from the assembly in the
// last bit; both are checked against float64.
func kernelGo(mr, nr, k int, a, b, c []float32, ldc int, add bool) {
	var accBuf [maxMR * maxNR]float32
	acc := accBuf[:mr*nr]
	for p := 0; p < k; p++ {
		bp := b[p*nr : p*nr+nr]
		for i, av := range a[p*mr : p*mr+mr] {
			row := acc[i*nr : i*nr+nr]
			for j, bv := range bp {
				row[j] += av * bv
			}
		}
	}
	for i := 0; i < mr; i++ {
		dst := c[i*ldc : i*ldc+nr]
		if add {
			for j, v := range acc[i*nr : i*nr+nr] {
				dst[j] += v
			}
		} else {
			copy(dst, acc[i*nr:i*nr+nr])
		}
	}
}

// maxMR and maxNR bound the micro-tile of every implementation.
const maxMR, maxNR = 14, 32

func roundUp(x, to int) int { return (x + to - 1) / to * to }

// balance returns the size of the blocks that split n into as few blocks of at most
// limit as possible, of nearly equal sizes rounded up to a multiple of align.
func balance(n, limit, align int) int {
	blocks := (n + limit - 1) / limit
	return min(limit, roundUp((n+blocks-1)/blocks, align))
}

// getBuf returns a recycled buffer of n elements (contents undefined), so that a steady
// stream of ops does not allocate; putBuf gives it back. Buffers are kept by size class,
// a power of two, so that a recycled buffer always fits a request of its class.
func getBuf[E any](n int) *[]E {
	c := bits.Len(uint(max(n, 1) - 1))
	p := (*singleton[bufClasses[E]]())[c].get()
	if *p == nil {
		*p = make([]E, 1<<c)
	}
	*p = (*p)[:n]
	return p
}

func putBuf[E any](p *[]E) {
	(*singleton[bufClasses[E]]())[bits.Len(uint(cap(*p)-1))].put(p)
}

// bufClasses are the free buffers of element type E, by size class: class c holds
// buffers of 2^c elements.
type bufClasses[E any] [48]freeList[[]E]
