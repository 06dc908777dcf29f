// Package backendtest is the conformance suite of kernels.Backend: Run checks every op and
// the Memory methods of a backend against float64 references written here, plain loops
// straight from the ops' doc comments in kernels/kernels.go, independent of any backend's
// code. kernels/cpu runs it in `make test`; a GPU backend runs the very same suite, since
// inputs reach the backend only through kernels.Upload and results come back only
// through kernels.Download.
//
// Each op is checked on random inputs of several shapes (seeded, so a failure reproduces),
// with widths that are not multiples of 16, and on its edge cases: masked rows, document
// boundaries, image rows (id -1), top-k ties and experts that receive no token, empty
// batches, NaN and Inf. Every operand lives in a view at an offset of a larger allocation
// whose guard bytes on either side must survive the call, and every input must come back
// unchanged, so an op that writes out of bounds or into its inputs fails too.
package backendtest

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"unsafe"

	"github.com/herdml/herd/kernels"
)

// TB is what Run reports to: *testing.T (T = *testing.T), or, in a test of the suite
// itself, a recorder of failures. Each op runs as a subtest named after it.
type TB[T any] interface {
	Helper()
	Errorf(format string, args ...any)
	Run(name string, f func(T)) bool
}

// reporter is the part of TB that the checks use.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// Run checks every op of be and its Memory methods, each in a subtest named after the
// method ("MatMul", "RoPE", ..., and "Memory" for the memory methods). A new backend's
// test calls backendtest.Run(t, be) for each element type it supports.
func Run[F kernels.Float, T TB[T]](t T, be kernels.Backend[F]) {
	t.Helper()
	for _, c := range checks[F]() {
		t.Run(c.name, func(st T) {
			st.Helper()
			runCheck(st, be, c)
		})
	}
}

// check is one subtest: an op's (or Memory's) cases.
type check[F kernels.Float] struct {
	name string
	run  func(e *env[F])
}

// checks lists the subtests, in the order of kernels.Backend's methods.
func checks[F kernels.Float]() []check[F] {
	return []check[F]{
		{"Memory", checkMemory[F]},
		{"MatMul", checkMatMul[F]},
		{"MatMulCodes", checkMatMulCodes[F]},
		{"Embedding", checkEmbedding[F]},
		{"EmbeddingBackward", checkEmbeddingBackward[F]},
		{"RMSNorm", checkRMSNorm[F]},
		{"RMSNormBackward", checkRMSNormBackward[F]},
		{"RoPE", checkRoPE[F]},
		{"RoPEBackward", checkRoPEBackward[F]},
		{"Attention", checkAttention[F]},
		{"AttentionBackward", checkAttentionBackward[F]},
		{"SwiGLU", checkSwiGLU[F]},
		{"SwiGLUBackward", checkSwiGLUBackward[F]},
		{"CrossEntropy", checkCrossEntropy[F]},
		{"CrossEntropyBackward", checkCrossEntropyBackward[F]},
		{"LossWeights", checkLossWeights[F]},
		{"Scale", checkScale[F]},
		{"Axpy", checkAxpy[F]},
		{"GatherRows", checkGatherRows[F]},
		{"GatherSum", checkGatherSum[F]},
		{"ScatterRows", checkScatterRows[F]},
		{"RowDots", checkRowDots[F]},
		{"Softmax", checkSoftmax[F]},
		{"Route", checkRoute[F]},
		{"RouterBackward", checkRouterBackward[F]},
		{"Dot", checkDot[F]},
		{"ColumnSums", checkColumnSums[F]},
		{"SumSquares", checkSumSquares[F]},
		{"MeanAbsDiff", checkMeanAbsDiff[F]},
		{"AdamW", checkAdamW[F]},
		{"Amax", checkAmax[F]},
		{"Quantize", checkQuantize[F]},
		{"Dequantize", checkDequantize[F]},
		{"QuantizeTiles", checkQuantizeTiles[F]},
		{"DequantizeTiles", checkDequantizeTiles[F]},
	}
}

// runCheck runs one subtest, reporting a panic of the backend as a failure of the op.
func runCheck[F kernels.Float](r reporter, be kernels.Backend[F], c check[F]) {
	r.Helper()
	h := fnv.New64a()
	h.Write([]byte(c.name))
	e := &env[F]{r: r, be: be, op: c.name, rng: rand.New(rand.NewPCG(h.Sum64(), 17)), eps: epsilon[F]()}
	defer func() {
		if p := recover(); p != nil {
			r.Errorf("%s %s: panicked: %v\n%s", e.op, e.at, p, debug.Stack())
		}
	}()
	c.run(e)
}

// env is the state of one subtest: the backend, the random source, the case being run
// and the buffers to verify after each call.
type env[F kernels.Float] struct {
	r      reporter
	be     kernels.Backend[F]
	op     string
	rng    *rand.Rand
	eps    float64  // machine epsilon of F: 2^-23 for float32, 2^-52 for float64
	at     string   // the case being run, for messages
	verify []func() // checks of the guards and inputs of the case's buffers
}

// epsilon is F's machine epsilon, the distance from 1 to the next larger value.
func epsilon[F kernels.Float]() float64 {
	var z F
	if unsafe.Sizeof(z) == 4 {
		return 0x1p-23
	}
	return 0x1p-52
}

// begin starts a case: format describes it (its shapes) in every message.
func (e *env[F]) begin(format string, args ...any) {
	e.at = fmt.Sprintf(format, args...)
	e.verify = e.verify[:0]
}

// errorf reports a failure of the op in the current case.
func (e *env[F]) errorf(format string, args ...any) {
	e.r.Helper()
	e.r.Errorf("%s %s: %s", e.op, e.at, fmt.Sprintf(format, args...))
}

// done checks that the case's guards are intact and its inputs unchanged.
func (e *env[F]) done() {
	e.r.Helper()
	for _, v := range e.verify {
		v()
	}
	e.verify = e.verify[:0]
}

// guard is how many elements sit before and after each operand's view; an odd count, so
// that views start at offsets that are not multiples of a vector.
const guard = 5

// guardByte fills the guards: as float32 0xA5A5A5A5 is -2.9e-16, as int32 -1515870811,
// values no op writes.
const guardByte = 0xA5

// bytesOf is the memory of a host slice as bytes.
func bytesOf[T kernels.Elem](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(z)))
}

// place uploads x into a view of len(x) elements at offset guard of a fresh allocation
// of the backend, with guard bytes on either side. e.done then checks that the guards are
// intact and, unless the op writes the view (out), that x is unchanged.
func place[T kernels.Elem, F kernels.Float](e *env[F], name string, x []T, out bool) kernels.Buf[T] {
	all := kernels.Alloc[T](e.be, len(x)+2*guard)
	host := make([]T, len(x)+2*guard)
	hb := bytesOf(host)
	for i := range hb {
		hb[i] = guardByte
	}
	copy(host[guard:], x)
	kernels.Upload(e.be, all, host)
	want := bytesOf(host)
	e.verify = append(e.verify, func() {
		e.r.Helper()
		got := make([]T, len(host))
		kernels.Download(e.be, got, all)
		gb, size := bytesOf(got), len(want)/len(host)
		for i := range gb {
			inView := i >= guard*size && i < len(gb)-guard*size
			if gb[i] != want[i] && (!inView || !out) {
				what := "the guard of"
				if inView {
					what = "input"
				}
				e.errorf("%s %s changed (byte %d of the view's allocation)", what, name, i-guard*size)
				return
			}
		}
	})
	return all.Slice(guard, guard+len(x))
}

// in uploads an input operand: verified unchanged after the call.
func in[T kernels.Elem, F kernels.Float](e *env[F], name string, x []T) kernels.Buf[T] {
	return place(e, name, x, false)
}

// out uploads an operand the op writes (or updates in place), with initial contents x.
func out[T kernels.Elem, F kernels.Float](e *env[F], name string, x []T) kernels.Buf[T] {
	return place(e, name, x, true)
}

// get downloads a buffer.
func get[T kernels.Elem, F kernels.Float](e *env[F], b kernels.Buf[T]) []T {
	s := make([]T, b.Len())
	kernels.Download(e.be, s, b)
	return s
}

// maxReports is how many wrong elements a comparison names before it just counts.
const maxReports = 3

// near compares got with the float64 reference want: element i passes when
// |got[i] - want[i]| <= tol·eps·mag[i] (tol 0: got[i] is want[i] rounded to F, bit for
// bit up to the sign of a zero), where mag[i] is the magnitude at which the rounding
// errors of element i arise (see tolerances). A NaN want needs a NaN, an infinite one the
// same infinity.
func near[F kernels.Float](e *env[F], name string, got []F, want, mag []float64, tol float64) {
	e.r.Helper()
	bad := 0
	for i, g := range got {
		w, ok := want[i], true
		switch {
		case math.IsNaN(w):
			ok = g != g
		case math.IsInf(w, 0) || tol == 0:
			ok = g == F(w)
		default:
			ok = math.Abs(float64(g)-w) <= tol*e.eps*magAt(mag, i)
		}
		if !ok {
			if bad < maxReports {
				e.errorf("%s[%d] = %v, want %v (tolerance %.3g)", name, i, g, w, tol*e.eps*magAt(mag, i))
			}
			bad++
		}
	}
	if bad > maxReports {
		e.errorf("%s: %d of %d elements wrong", name, bad, len(got))
	}
}

func magAt(mag []float64, i int) float64 {
	if mag == nil {
		return 0
	}
	return mag[i]
}

// same compares got with want element for element, bit-exact (NaN equal to any NaN).
func same[T kernels.Elem, F kernels.Float](e *env[F], name string, got, want []T) {
	e.r.Helper()
	bad := 0
	for i := range got {
		g, w := got[i], want[i]
		if g != w && !(g != g && w != w) {
			if bad < maxReports {
				e.errorf("%s[%d] = %v, want %v", name, i, g, w)
			}
			bad++
		}
	}
	if len(got) != len(want) {
		e.errorf("%s: %d elements, want %d", name, len(got), len(want))
	}
	if bad > maxReports {
		e.errorf("%s: %d of %d elements wrong", name, bad, len(got))
	}
}

// sameRuns checks the contract's determinism where a backend could lose it (sums spread
// over threads, atomic adds): two calls on the same inputs, into a and b, gave the same
// bits.
func sameRuns[F kernels.Float](e *env[F], name string, a, b kernels.Buf[F]) {
	e.r.Helper()
	same(e, name+" of two identical calls", get(e, a), get(e, b))
}

// nearScalar compares a float64 read-back with its reference: |got - want| <= tol·mag
// (tol 0: bit-exact), NaN needing NaN and an infinity itself.
func nearScalar[F kernels.Float](e *env[F], name string, got, want, mag, tol float64) {
	e.r.Helper()
	var ok bool
	switch {
	case math.IsNaN(want):
		ok = math.IsNaN(got)
	case math.IsInf(want, 0) || tol == 0:
		ok = got == want
	default:
		ok = math.Abs(got-want) <= tol*mag
	}
	if !ok {
		e.errorf("%s = %v, want %v (tolerance %.3g)", name, got, want, tol*mag)
	}
}

// toF converts float64 values to F, as an op's inputs.
func toF[F kernels.Float](x []float64) []F {
	s := make([]F, len(x))
	for i, v := range x {
		s[i] = F(v)
	}
	return s
}

// to64 widens an op's values to float64 for the references.
func to64[F kernels.Float](x []F) []float64 {
	s := make([]float64, len(x))
	for i, v := range x {
		s[i] = float64(v)
	}
	return s
}

// uniform returns n values uniform in [lo, hi), exact in F.
func uniform[F kernels.Float](e *env[F], n int, lo, hi float64) []F {
	s := make([]F, n)
	for i := range s {
		s[i] = F(lo + (hi-lo)*e.rng.Float64())
	}
	return s
}

// ints returns n int32 values uniform in [lo, hi).
func ints[F kernels.Float](e *env[F], n int, lo, hi int) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = int32(lo + e.rng.IntN(hi-lo))
	}
	return s
}

// unwritten returns the initial contents of an output that an op writes: 77s, a value
// none of the cases writes, so that an element the op skips or adds to shows.
func unwritten[T kernels.Elem](n int) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = 77
	}
	return s
}
