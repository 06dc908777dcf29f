package backendtest

import (
	"github.com/herdml/herd/kernels"
)

// checkMemory checks Alloc, Upload, Download, ToHost, Copy and Zero, on whole buffers and
// on views at offsets, for every element type a buffer holds.
func checkMemory[F kernels.Float](e *env[F]) {
	memoryOf(e, func(i int) F { return F(i) + 0.5 })
	memoryOf(e, func(i int) float32 { return float32(i) - 0.25 })
	memoryOf(e, func(i int) float64 { return float64(i) * 1.5 })
	memoryOf(e, func(i int) int32 { return int32(-3 * i) })
	memoryOf(e, func(i int) uint8 { return uint8(7*i + 1) })
}

// memoryOf checks the memory methods for the element type T, val(i) giving the i-th test
// value.
func memoryOf[T kernels.Elem, F kernels.Float](e *env[F], val func(int) T) {
	e.r.Helper()
	var z T
	for _, n := range []int{0, 1, 17, 100} {
		e.begin("%T n=%d", z, n)
		b := kernels.Alloc[T](e.be, n)
		if b.Len() != n {
			e.errorf("Alloc: Len() = %d", b.Len())
			continue
		}
		if n > 0 && b.Addr()%64 != 0 {
			e.errorf("Alloc: address %#x is not aligned to 64 bytes", b.Addr())
		}
		same(e, "Alloc (zeroed)", get(e, b), make([]T, n))

		src := make([]T, n)
		for i := range src {
			src[i] = val(i + 1)
		}
		kernels.Upload(e.be, b, src)
		same(e, "Download after Upload", get(e, b), src)
		same(e, "ToHost", kernels.ToHost(e.be, b), src)

		c := kernels.Alloc[T](e.be, n)
		kernels.Copy(e.be, c, b)
		same(e, "Copy", get(e, c), src)
		kernels.Zero(e.be, b)
		same(e, "Zero", get(e, b), make([]T, n))
		same(e, "Copy's destination after Zero of its source", get(e, c), src)
	}

	// Views: writes through a view at an offset change that range and nothing else.
	e.begin("%T views", z)
	const n, lo, hi = 40, 3, 29
	b := kernels.Alloc[T](e.be, n)
	want := make([]T, n)
	for i := range want {
		want[i] = val(i + 1)
	}
	kernels.Upload(e.be, b, want)
	part := make([]T, hi-lo)
	for i := range part {
		part[i] = val(100 + i)
	}
	v := b.Slice(lo, hi)
	if v.Len() != hi-lo {
		e.errorf("Slice(%d, %d): Len() = %d", lo, hi, v.Len())
		return
	}
	kernels.Upload(e.be, v, part)
	copy(want[lo:hi], part)
	same(e, "buffer after Upload to a view", get(e, b), want)
	same(e, "Download of a view", get(e, v), part)
	same(e, "Download of a view of a view", get(e, v.Slice(2, 7)), part[2:7])
	same(e, "Download of From", get(e, b.From(lo)), want[lo:])

	// Copy between views of one allocation that do not overlap, and between allocations.
	kernels.Copy(e.be, b.Slice(0, 10), b.Slice(30, 40))
	copy(want[0:10], want[30:40])
	same(e, "buffer after Copy between its views", get(e, b), want)
	other := kernels.Alloc[T](e.be, 8)
	kernels.Copy(e.be, other, b.Slice(11, 19))
	same(e, "Copy from a view", get(e, other), want[11:19])
	kernels.Copy(e.be, b.Slice(31, 39), other)
	copy(want[31:39], want[11:19])
	same(e, "Copy into a view", get(e, b), want)

	kernels.Zero(e.be, b.Slice(5, 12))
	clear(want[5:12])
	same(e, "buffer after Zero of a view", get(e, b), want)

	// Empty views and buffers: every method is a no-op.
	kernels.Upload(e.be, b.Slice(4, 4), nil)
	kernels.Download(e.be, nil, b.Slice(4, 4))
	kernels.Copy(e.be, b.Slice(4, 4), b.Slice(9, 9))
	kernels.Zero(e.be, b.Slice(4, 4))
	kernels.Zero(e.be, kernels.Buf[T]{})
	same(e, "buffer after no-ops on empty views", get(e, b), want)
}
