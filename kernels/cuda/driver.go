package cuda

// The CUDA driver API (libcuda.so.1, which ships with the NVIDIA driver), bound through
// Load and Bind: device discovery, a device's primary context, memory, modules, kernel
// launches and streams. Only the calls herd makes are bound.
//
// Calling rules (purego follows the C ABI and cgo's pointer rules): handles and device
// addresses are uintptr, out-parameters are Go pointers the driver writes before it
// returns, host buffers are []byte passed as their first byte's address, and nothing the
// driver keeps after a call points into Go memory, except a launch's parameters, which
// are pinned for its duration (Launch).

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"
)

// DriverLib is the driver's library. Only the versioned name: the toolkit's
// lib64/stubs/libcuda.so links programs but fails every call.
const DriverLib = "libcuda.so.1"

// ErrNoDevice says that a device index is not one the driver lists.
var ErrNoDevice = errors.New("no such CUDA device")

// Error is a driver call's CUresult other than CUDA_SUCCESS.
type Error struct {
	Call string // the driver function, e.g. "cuMemAlloc_v2"
	Code int    // the CUresult
	Name string // the driver's name for Code, e.g. "CUDA_ERROR_OUT_OF_MEMORY"
	Text string // the driver's description of Code
}

func (e *Error) Error() string {
	return fmt.Sprintf("cuda: %s: %s (%s)", e.Call, e.Name, e.Text)
}

// CUdevice_attribute values herd reads.
const (
	attrSMCount  = 16 // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
	attrCCMajor  = 75 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
	attrCCMinor  = 76 // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR
	nameCapacity = 256
)

// Driver is the loaded and initialised CUDA driver library.
type Driver struct {
	Version int // the newest CUDA version the driver supports, 1000·major + 10·minor

	// The driver's functions, named as in cuda.h, which maps the names to the _v2 symbols
	// bound where there are two (size_t sizes, 64-bit device addresses). Each returns a
	// CUresult; a CUdevice is an int32, size_t a uint64.
	cuInit                    func(flags uint32) int32
	cuDriverGetVersion        func(v *int32) int32
	cuDeviceGetCount          func(n *int32) int32
	cuDeviceGet               func(dev *int32, ordinal int32) int32
	cuDeviceGetName           func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) int32
	cuDeviceTotalMem          func(bytes *uint64, dev int32) int32
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease func(dev int32) int32
	cuCtxSetCurrent           func(ctx uintptr) int32
	cuMemAlloc                func(p *uintptr, n uint64) int32
	cuMemFree                 func(p uintptr) int32
	cuMemcpyHtoD              func(dst uintptr, src []byte, n uint64) int32
	cuMemcpyDtoH              func(dst []byte, src uintptr, n uint64) int32
	cuMemcpyDtoD              func(dst, src uintptr, n uint64) int32
	cuMemsetD8                func(p uintptr, v uint8, n uint64) int32
	cuModuleLoadData          func(m *uintptr, image []byte) int32
	cuModuleGetFunction       func(f *uintptr, m uintptr, name string) int32
	cuLaunchKernel            func(f uintptr, gx, gy, gz, bx, by, bz, shared uint32, s uintptr, params *unsafe.Pointer, extra uintptr) int32
	cuStreamCreate            func(s *uintptr, flags uint32) int32
	cuStreamSynchronize       func(s uintptr) int32
	cuGetErrorName            func(code int32, s **byte) int32
	cuGetErrorString          func(code int32, s **byte) int32
}

var loaded = sync.OnceValues(func() (*Driver, error) { return loadDriver(DriverLib) })

// LoadDriver returns the CUDA driver, loaded and initialised (cuInit) on first use. Its
// error wraps ErrNoLibrary, with Load's account of where it looked, when libcuda.so.1 is
// nowhere; it is an *Error when cuInit fails (CUDA_ERROR_NO_DEVICE on a host whose driver
// sees no GPU).
func LoadDriver() (*Driver, error) { return loaded() }

// Devices lists the GPUs the driver sees, in its order: the indices of cuda:N.
func Devices() ([]Device, error) {
	d, err := LoadDriver()
	if err != nil {
		return nil, err
	}
	return d.Devices()
}

// loadDriver loads the first of names that Load finds and initialises it.
//
// Unless the user chose an order, it numbers the devices by PCI bus, as NVML does, so
// that cuda:N is the GPU that `herd gpus` and the workers' inventories list as N (the
// driver's default puts the fastest first). CUDA_VISIBLE_DEVICES still applies to the
// driver alone.
func loadDriver(names ...string) (*Driver, error) {
	lib, err := Load(names...)
	if err != nil {
		return nil, fmt.Errorf("no NVIDIA driver: %w", err)
	}
	d := &Driver{}
	for _, b := range []struct {
		fptr any
		name string
	}{
		{&d.cuInit, "cuInit"},
		{&d.cuDriverGetVersion, "cuDriverGetVersion"},
		{&d.cuDeviceGetCount, "cuDeviceGetCount"},
		{&d.cuDeviceGet, "cuDeviceGet"},
		{&d.cuDeviceGetName, "cuDeviceGetName"},
		{&d.cuDeviceGetAttribute, "cuDeviceGetAttribute"},
		{&d.cuDeviceTotalMem, "cuDeviceTotalMem_v2"},
		{&d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"},
		{&d.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"},
		{&d.cuCtxSetCurrent, "cuCtxSetCurrent"},
		{&d.cuMemAlloc, "cuMemAlloc_v2"},
		{&d.cuMemFree, "cuMemFree_v2"},
		{&d.cuMemcpyHtoD, "cuMemcpyHtoD_v2"},
		{&d.cuMemcpyDtoH, "cuMemcpyDtoH_v2"},
		{&d.cuMemcpyDtoD, "cuMemcpyDtoD_v2"},
		{&d.cuMemsetD8, "cuMemsetD8_v2"},
		{&d.cuModuleLoadData, "cuModuleLoadData"},
		{&d.cuModuleGetFunction, "cuModuleGetFunction"},
		{&d.cuLaunchKernel, "cuLaunchKernel"},
		{&d.cuStreamCreate, "cuStreamCreate"},
		{&d.cuStreamSynchronize, "cuStreamSynchronize"},
		{&d.cuGetErrorName, "cuGetErrorName"},
		{&d.cuGetErrorString, "cuGetErrorString"},
	} {
		if err := lib.Bind(b.fptr, b.name); err != nil {
			return nil, err
		}
	}
	if os.Getenv("CUDA_DEVICE_ORDER") == "" {
		os.Setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
	}
	if err := d.check("cuInit", d.cuInit(0)); err != nil {
		return nil, err
	}
	var v int32
	if err := d.check("cuDriverGetVersion", d.cuDriverGetVersion(&v)); err != nil {
		return nil, err
	}
	d.Version = int(v)
	return d, nil
}

// check turns call's CUresult code into nil (CUDA_SUCCESS) or an *Error with the
// driver's name and description of the code.
func (d *Driver) check(call string, code int32) error {
	if code == 0 {
		return nil
	}
	e := &Error{Call: call, Code: int(code), Name: fmt.Sprintf("CUresult %d", code), Text: "unknown to the driver"}
	var s *byte
	if d.cuGetErrorName(code, &s) == 0 && s != nil {
		e.Name = cString(s)
	}
	if d.cuGetErrorString(code, &s) == 0 && s != nil {
		e.Text = cString(s)
	}
	return e
}

// cString copies the NUL-terminated C string at p, which the driver owns.
func cString(p *byte) string {
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// Device is one GPU as the driver reports it.
type Device struct {
	Index        int    // its N in cuda:N
	Name         string // e.g. "NVIDIA H100 80GB HBM3"
	Major, Minor int    // compute capability: NVRTC compiles for compute_<Major><Minor>
	SMs          int    // streaming multiprocessors
	Memory       uint64 // bytes of device memory
	handle       int32  // the CUdevice
}

// String is the device as messages name it: "cuda:0 NVIDIA H100 80GB HBM3 (compute
// capability 9.0, 79.6 GiB)".
func (v Device) String() string {
	return fmt.Sprintf("cuda:%d %s (compute capability %d.%d, %.1f GiB)", v.Index, v.Name, v.Major, v.Minor, float64(v.Memory)/(1<<30))
}

// Devices lists the GPUs the driver sees, in its order.
func (d *Driver) Devices() ([]Device, error) {
	var n int32
	if err := d.check("cuDeviceGetCount", d.cuDeviceGetCount(&n)); err != nil {
		return nil, err
	}
	devs := make([]Device, n)
	for i := range devs {
		var err error
		if devs[i], err = d.device(i); err != nil {
			return nil, err
		}
	}
	return devs, nil
}

// Device returns GPU i. An index the driver does not list is an error wrapping
// ErrNoDevice that says how many it lists.
func (d *Driver) Device(i int) (Device, error) {
	var n int32
	if err := d.check("cuDeviceGetCount", d.cuDeviceGetCount(&n)); err != nil {
		return Device{}, err
	}
	if i < 0 || i >= int(n) {
		return Device{}, fmt.Errorf("%w: cuda:%d, the driver lists %d", ErrNoDevice, i, n)
	}
	return d.device(i)
}

// device reads GPU i, which the driver lists.
func (d *Driver) device(i int) (Device, error) {
	v := Device{Index: i}
	if err := d.check("cuDeviceGet", d.cuDeviceGet(&v.handle, int32(i))); err != nil {
		return Device{}, err
	}
	name := make([]byte, nameCapacity)
	if err := d.check("cuDeviceGetName", d.cuDeviceGetName(&name[0], nameCapacity, v.handle)); err != nil {
		return Device{}, err
	}
	v.Name = cString(&name[0])
	for _, a := range []struct {
		attr int32
		dst  *int
	}{{attrCCMajor, &v.Major}, {attrCCMinor, &v.Minor}, {attrSMCount, &v.SMs}} {
		var x int32
		if err := d.check("cuDeviceGetAttribute", d.cuDeviceGetAttribute(&x, a.attr, v.handle)); err != nil {
			return Device{}, err
		}
		*a.dst = int(x)
	}
	if err := d.check("cuDeviceTotalMem_v2", d.cuDeviceTotalMem(&v.Memory, v.handle)); err != nil {
		return Device{}, err
	}
	return v, nil
}

// Handles of the driver's objects. Stream 0 is the legacy default stream, which every
// other stream created with flags 0 (Context.NewStream) waits for and is waited for by.
type (
	Module   uintptr // a loaded cubin or PTX image
	Function uintptr // a kernel in a Module
	Stream   uintptr // a queue of work on the device
)

// Dim3 is a launch's grid or block shape.
type Dim3 struct{ X, Y, Z uint32 }

// Context is one device's primary context: the context the CUDA runtime and the libraries
// built on it (cuBLASLt, NCCL) use too, so memory and streams pass between them freely.
// Its methods are safe for concurrent use.
type Context struct {
	Device Device
	drv    *Driver
	ctx    uintptr
}

// Retain returns GPU i's primary context, which stays alive until Release.
func (d *Driver) Retain(i int) (*Context, error) {
	v, err := d.Device(i)
	if err != nil {
		return nil, err
	}
	c := &Context{Device: v, drv: d}
	if err := d.check("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain(&c.ctx, v.handle)); err != nil {
		return nil, err
	}
	return c, nil
}

// Release gives the primary context back; the driver destroys it, with every allocation,
// module and stream in it, when its last holder in the process releases it.
func (c *Context) Release() error {
	return c.drv.check("cuDevicePrimaryCtxRelease_v2", c.drv.cuDevicePrimaryCtxRelease(c.Device.handle))
}

// do runs f with c current on the calling OS thread. A context is current per thread, and
// Go may move a goroutine to another thread between any two calls, so each group of
// driver calls locks its thread and sets c first.
func (c *Context) do(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.drv.check("cuCtxSetCurrent", c.drv.cuCtxSetCurrent(c.ctx)); err != nil {
		return err
	}
	return f()
}

// Alloc returns the address of n > 0 bytes of device memory, aligned to at least 256
// bytes (the driver's guarantee), their contents undefined.
func (c *Context) Alloc(n int) (uintptr, error) {
	var p uintptr
	err := c.do(func() error { return c.drv.check("cuMemAlloc_v2", c.drv.cuMemAlloc(&p, uint64(n))) })
	return p, err
}

// Free frees the allocation at p, an address Alloc returned.
func (c *Context) Free(p uintptr) error {
	return c.do(func() error { return c.drv.check("cuMemFree_v2", c.drv.cuMemFree(p)) })
}

// Upload copies src to the device at dst. It returns when src may be reused; the copy is
// ordered on the default stream, before any work queued after it.
func (c *Context) Upload(dst uintptr, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	return c.do(func() error { return c.drv.check("cuMemcpyHtoD_v2", c.drv.cuMemcpyHtoD(dst, src, uint64(len(src)))) })
}

// Download copies len(dst) bytes at src on the device to dst, once the work queued on
// the default stream before it is done; it returns with dst filled.
func (c *Context) Download(dst []byte, src uintptr) error {
	if len(dst) == 0 {
		return nil
	}
	return c.do(func() error { return c.drv.check("cuMemcpyDtoH_v2", c.drv.cuMemcpyDtoH(dst, src, uint64(len(dst)))) })
}

// CopyDevice queues a copy of n bytes from src to dst, both on the device, on the default
// stream.
func (c *Context) CopyDevice(dst, src uintptr, n int) error {
	return c.do(func() error { return c.drv.check("cuMemcpyDtoD_v2", c.drv.cuMemcpyDtoD(dst, src, uint64(n))) })
}

// Memset queues setting n bytes at p to v on the default stream.
func (c *Context) Memset(p uintptr, v byte, n int) error {
	return c.do(func() error { return c.drv.check("cuMemsetD8_v2", c.drv.cuMemsetD8(p, v, uint64(n))) })
}

// LoadModule loads a cubin or PTX image (NVRTC's output) into c.
func (c *Context) LoadModule(image []byte) (Module, error) {
	// PTX is read up to a NUL byte; a cubin's length is in its header, so the NUL added
	// here is harmless to it.
	image = append(image[:len(image):len(image)], 0)
	var m uintptr
	err := c.do(func() error { return c.drv.check("cuModuleLoadData", c.drv.cuModuleLoadData(&m, image)) })
	return Module(m), err
}

// Function returns the kernel m exports under name (its extern "C" name).
func (c *Context) Function(m Module, name string) (Function, error) {
	var f uintptr
	err := c.do(func() error {
		if err := c.drv.check("cuModuleGetFunction", c.drv.cuModuleGetFunction(&f, uintptr(m), name)); err != nil {
			return fmt.Errorf("kernel %s: %w", name, err)
		}
		return nil
	})
	return Function(f), err
}

// NewStream creates a stream that is ordered with the default stream (flags 0).
func (c *Context) NewStream() (Stream, error) {
	var s uintptr
	err := c.do(func() error { return c.drv.check("cuStreamCreate", c.drv.cuStreamCreate(&s, 0)) })
	return Stream(s), err
}

// Synchronize waits for the work queued on s, and returns the first error of that work
// (a kernel's illegal address surfaces here, or in the next call after it).
func (c *Context) Synchronize(s Stream) error {
	return c.do(func() error { return c.drv.check("cuStreamSynchronize", c.drv.cuStreamSynchronize(uintptr(s))) })
}

// Launch queues kernel f on stream s over grid blocks of block threads, with shared bytes
// of dynamic shared memory, and args as the kernel's parameters in order. Each arg is one
// of uintptr (a device address, e.g. a Buf's Addr), int32, uint32, int64, uint64, float32
// or float64, matching the C parameter's type and size; a Go int is refused, since its
// size differs from C's int.
func (c *Context) Launch(f Function, grid, block Dim3, shared uint32, s Stream, args ...any) error {
	// The driver reads each parameter through a pointer, during the call only. The values
	// are copied to the heap and pinned, with the pointer array, so that no pointer the
	// driver holds can move.
	var pin runtime.Pinner
	defer pin.Unpin()
	params := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		var p unsafe.Pointer
		switch v := a.(type) {
		case uintptr:
			p = unsafe.Pointer(&v)
		case int32:
			p = unsafe.Pointer(&v)
		case uint32:
			p = unsafe.Pointer(&v)
		case int64:
			p = unsafe.Pointer(&v)
		case uint64:
			p = unsafe.Pointer(&v)
		case float32:
			p = unsafe.Pointer(&v)
		case float64:
			p = unsafe.Pointer(&v)
		default:
			return fmt.Errorf("cuda: launch argument %d is a %T; want uintptr, int32, uint32, int64, uint64, float32 or float64", i, a)
		}
		pin.Pin(p)
		params[i] = p
	}
	var pp *unsafe.Pointer
	if len(params) > 0 {
		pp = &params[0]
		pin.Pin(pp)
	}
	return c.do(func() error {
		return c.drv.check("cuLaunchKernel", c.drv.cuLaunchKernel(uintptr(f), grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, shared, uintptr(s), pp, 0))
	})
}
