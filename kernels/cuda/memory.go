package cuda

import (
	"fmt"
	"sync"

	"github.com/herdml/herd/kernels"
)

// Memory is kernels.Memory in one device's memory, through its primary context: the
// memory a CUDA Backend embeds. Its buffers are kernels.DeviceBuf views of allocations
// made with cuMemAlloc. Every copy and memset is ordered on the default stream, so it
// happens after the kernels queued before it and before those queued after it; Download
// waits for them.
//
// Allocations are freed explicitly, by Free or all at once by Close, not by a finalizer:
// a device Buf holds its address as a uintptr, which the garbage collector does not trace,
// so no Go object's death says that the last view of an allocation is gone. A run
// allocates its parameters, moments and activations once and closes the Memory at its end.
//
// kernels.Memory's methods return no error, so a failing driver call (out of memory, or
// an earlier kernel's fault reported by the next call) panics with the *Error, as Go's
// own allocator does when memory runs out.
type Memory struct {
	ctx *Context

	mu   sync.Mutex
	live map[uintptr]int // base address → bytes of each allocation not yet freed
}

var _ kernels.Memory = (*Memory)(nil)

// NewMemory returns an empty Memory on ctx's device. ctx must outlive it.
func NewMemory(ctx *Context) *Memory {
	return &Memory{ctx: ctx, live: map[uintptr]int{}}
}

// alignment is kernels.Memory's promise for AllocBytes; the driver's own (256) exceeds it.
const alignment = 64

// AllocBytes returns n zeroed bytes of device memory, aligned to 64, held until Free or
// Close. n = 0 is the empty buffer.
func (m *Memory) AllocBytes(n int) kernels.Buf[uint8] {
	if n == 0 {
		return kernels.Buf[uint8]{}
	}
	p, err := m.ctx.Alloc(n)
	if err != nil {
		panic(fmt.Errorf("cuda: allocating %d bytes on %s: %w", n, m.ctx.Device, err))
	}
	if p%alignment != 0 {
		panic(fmt.Sprintf("cuda: cuMemAlloc_v2 returned %#x, not %d-byte aligned", p, alignment))
	}
	must(m.ctx.Memset(p, 0, n))
	m.mu.Lock()
	m.live[p] = n
	m.mu.Unlock()
	return kernels.DeviceBuf[uint8](p, n)
}

// Free frees the allocation b is the whole of (what AllocBytes returned, or kernels.Bytes
// of what kernels.Alloc returned). Every view of it is invalid afterwards. Freeing
// anything else panics.
func (m *Memory) Free(b kernels.Buf[uint8]) {
	if b.Len() == 0 {
		return
	}
	m.mu.Lock()
	n, ok := m.live[b.Addr()]
	if ok && n == b.Len() {
		delete(m.live, b.Addr())
	}
	m.mu.Unlock()
	if !ok || n != b.Len() {
		panic(fmt.Sprintf("cuda: Free of %d bytes at %#x, not an allocation of this Memory", b.Len(), b.Addr()))
	}
	must(m.ctx.Free(b.Addr()))
}

// Close frees every allocation not freed yet. The Memory is empty and usable afterwards.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range m.live {
		if err := m.ctx.Free(p); err != nil {
			return err
		}
		delete(m.live, p)
	}
	return nil
}

// InUse is the number of bytes allocated and not freed.
func (m *Memory) InUse() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	total := 0
	for _, n := range m.live {
		total += n
	}
	return total
}

// UploadBytes copies src into dst, a device buffer of len(src) bytes.
func (m *Memory) UploadBytes(dst kernels.Buf[uint8], src []byte) {
	checkDevice("UploadBytes", dst, len(src))
	must(m.ctx.Upload(dst.Addr(), src))
}

// DownloadBytes copies src, a device buffer of len(dst) bytes, into dst.
func (m *Memory) DownloadBytes(dst []byte, src kernels.Buf[uint8]) {
	checkDevice("DownloadBytes", src, len(dst))
	must(m.ctx.Download(dst, src.Addr()))
}

// CopyBytes copies src into dst, device buffers of the same length that do not overlap.
func (m *Memory) CopyBytes(dst, src kernels.Buf[uint8]) {
	checkDevice("CopyBytes", dst, src.Len())
	checkDevice("CopyBytes", src, dst.Len())
	if dst.Len() > 0 {
		must(m.ctx.CopyDevice(dst.Addr(), src.Addr(), dst.Len()))
	}
}

// ZeroBytes sets every byte of b, a device buffer, to 0.
func (m *Memory) ZeroBytes(b kernels.Buf[uint8]) {
	checkDevice("ZeroBytes", b, b.Len())
	if b.Len() > 0 {
		must(m.ctx.Memset(b.Addr(), 0, b.Len()))
	}
}

// checkDevice panics unless b is n bytes of device memory (or empty, with n = 0): a host
// buffer here is a caller's bug that the driver would report as an invalid address, or
// not at all.
func checkDevice(op string, b kernels.Buf[uint8], n int) {
	if b.Len() != n || (n > 0 && !b.OnDevice()) {
		panic(fmt.Sprintf("cuda: Memory.%s: %d bytes (on device: %t), want %d bytes of device memory", op, b.Len(), b.OnDevice(), n))
	}
}

// must panics with a driver error: the Memory methods' way to fail (see Memory).
func must(err error) {
	if err != nil {
		panic(err)
	}
}
