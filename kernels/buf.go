package kernels

import (
	"fmt"
	"unsafe"
)

// Elem is an element type a backend buffer holds: the model's floats, float32 optimizer
// moments and FP8 scales, int32 indices (token ids, positions, documents, routing) and
// uint8 FP8 codes.
type Elem interface {
	~float32 | ~float64 | ~int32 | ~uint8
}

// Buf is a view of memory that a backend owns: n elements of type T, a range of one
// allocation, as llm.c's CUDA trainer keeps one device block and pointers into it. A host
// backend's buffer is a Go slice, so the CPU path costs nothing extra; a device backend's
// is an address in device memory that host code never reads.
//
// Host code reaches a buffer's elements only at the named crossing points (docs/kernels.md):
// through Upload, Download and ToHost, and the scalar read-backs of the Backend's
// reductions. Host returns a host backend's slice for the backend itself and for tests.
//
// The zero Buf is an empty buffer; ops that take an optional operand take an empty one
// for "none".
type Buf[T Elem] struct {
	host []T     // a host buffer's elements, capacity = length
	dev  uintptr // a device buffer's first element; 0 for host buffers
	n    int
}

// HostBuf is a view of s as a buffer of a host backend.
func HostBuf[T Elem](s []T) Buf[T] { return Buf[T]{host: s[:len(s):len(s)], n: len(s)} }

// DeviceBuf is a view of n elements at address addr of a device backend's memory.
func DeviceBuf[T Elem](addr uintptr, n int) Buf[T] { return Buf[T]{dev: addr, n: n} }

// Len is the number of elements.
func (b Buf[T]) Len() int { return b.n }

// Slice returns elements [lo, hi) of b, as s[lo:hi] does a slice's; it panics if the range
// is not inside [0, Len()].
func (b Buf[T]) Slice(lo, hi int) Buf[T] {
	if b.dev == 0 {
		return Buf[T]{host: b.host[lo:hi:hi], n: hi - lo}
	}
	if lo < 0 || hi < lo || hi > b.n {
		panic(fmt.Sprintf("kernels.Buf.Slice: [%d:%d] of %d elements", lo, hi, b.n))
	}
	var zero T
	return Buf[T]{dev: b.dev + uintptr(lo)*unsafe.Sizeof(zero), n: hi - lo}
}

// From returns elements [lo, Len()) of b.
func (b Buf[T]) From(lo int) Buf[T] { return b.Slice(lo, b.n) }

// Host returns the elements of a host buffer (nil for an empty one), and nil for a device
// buffer. Only host backends, the crossing points and tests call it.
func (b Buf[T]) Host() []T { return b.host }

// OnDevice says whether b is device memory, which host code cannot read.
func (b Buf[T]) OnDevice() bool { return b.dev != 0 }

// Addr is the address of b's first element (host or device), 0 when b is empty: two
// views with the same Addr and Len are the same elements.
func (b Buf[T]) Addr() uintptr {
	if b.dev != 0 {
		return b.dev
	}
	if b.n == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b.host[0]))
}

// Bytes is b's memory as bytes, for the byte-level Memory methods.
func Bytes[T Elem](b Buf[T]) Buf[uint8] {
	var zero T
	size := int(unsafe.Sizeof(zero))
	if b.dev != 0 {
		return Buf[uint8]{dev: b.dev, n: b.n * size}
	}
	if b.n == 0 {
		return Buf[uint8]{}
	}
	return HostBuf(unsafe.Slice((*uint8)(unsafe.Pointer(&b.host[0])), b.n*size))
}

// As is the reverse of Bytes: b's memory as elements of type T. b's length must be a
// multiple of T's size and, for a host buffer, its first byte aligned for T (the buffers
// of Memory.Alloc are).
func As[T Elem](b Buf[uint8]) Buf[T] {
	var zero T
	size := int(unsafe.Sizeof(zero))
	if b.n%size != 0 {
		panic(fmt.Sprintf("kernels.As: %d bytes are not a whole number of %d-byte elements", b.n, size))
	}
	if b.dev != 0 {
		return Buf[T]{dev: b.dev, n: b.n / size}
	}
	if b.n == 0 {
		return Buf[T]{}
	}
	p := unsafe.Pointer(&b.host[0])
	if uintptr(p)%uintptr(size) != 0 {
		panic("kernels.As: host bytes not aligned for the element type")
	}
	return HostBuf(unsafe.Slice((*T)(p), b.n/size))
}

// Memory is where a backend keeps its buffers, and the only way host memory crosses into
// it or out of it. Its methods work on bytes; Alloc, Upload, Download, ToHost, Copy and
// Zero below give them element types.
type Memory interface {
	// AllocBytes returns n zeroed bytes aligned to 64, owned by the backend. A host
	// backend's are Go memory, freed once no view is left; a device backend's stay
	// allocated until it is closed (a Buf holds a device address, which the garbage
	// collector does not track), so herd allocates a run's buffers once, at start.
	AllocBytes(n int) Buf[uint8]
	// UploadBytes copies len(src) host bytes into dst, a buffer of as many bytes.
	UploadBytes(dst Buf[uint8], src []byte)
	// DownloadBytes copies src into dst, a host slice of as many bytes.
	DownloadBytes(dst []byte, src Buf[uint8])
	// CopyBytes copies src into dst, two buffers of the same length that do not overlap.
	CopyBytes(dst, src Buf[uint8])
	// ZeroBytes sets every byte of b to 0.
	ZeroBytes(b Buf[uint8])
}

// Alloc returns a zeroed buffer of n elements of type T in mem.
func Alloc[T Elem](mem Memory, n int) Buf[T] {
	var zero T
	return As[T](mem.AllocBytes(n * int(unsafe.Sizeof(zero))))
}

// Upload copies src into dst (len(src) = dst.Len()): the batch upload, initial parameters
// and a checkpoint's tensors. It does nothing when src is dst's own host memory (what
// ToHost returned for a host buffer).
func Upload[T Elem](mem Memory, dst Buf[T], src []T) {
	checkLen("Upload", dst.n, len(src))
	if len(src) == 0 || (!dst.OnDevice() && &dst.host[0] == &src[0]) {
		return
	}
	mem.UploadBytes(Bytes(dst), Bytes(HostBuf(src)).host)
}

// Download copies src into dst, a host slice of src.Len() elements.
func Download[T Elem](mem Memory, dst []T, src Buf[T]) {
	checkLen("Download", len(dst), src.n)
	if len(dst) == 0 || (!src.OnDevice() && &src.host[0] == &dst[0]) {
		return
	}
	mem.DownloadBytes(Bytes(HostBuf(dst)).host, Bytes(src))
}

// ToHost returns b's elements in host memory: a host buffer's own slice (no copy: writing
// to it writes to b), else a new slice downloaded from the device. Upload(mem, b, s) with
// the returned s then writes changes back, and costs nothing for a host buffer. Checkpoint
// save and load and the collective's staging use it.
func ToHost[T Elem](mem Memory, b Buf[T]) []T {
	if !b.OnDevice() {
		return b.host
	}
	s := make([]T, b.n)
	Download(mem, s, b)
	return s
}

// Copy copies src into dst, two buffers of the same length in mem that do not overlap.
func Copy[T Elem](mem Memory, dst, src Buf[T]) {
	checkLen("Copy", dst.n, src.n)
	if dst.n > 0 {
		mem.CopyBytes(Bytes(dst), Bytes(src))
	}
}

// Zero sets every element of b to zero (+0 for floats).
func Zero[T Elem](mem Memory, b Buf[T]) {
	if b.n > 0 {
		mem.ZeroBytes(Bytes(b))
	}
}

func checkLen(op string, dst, src int) {
	if dst != src {
		panic(fmt.Sprintf("kernels.%s: %d elements into %d", op, src, dst))
	}
}
