package cuda

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/kernels"
)

// Without libcuda.so.1 the driver is ErrNoLibrary, saying that there is no NVIDIA driver
// and, in Load's words, where it looked.
func TestDriverMissing(t *testing.T) {
	t.Setenv(LibsEnv, "/nonexistent/herd-cuda")
	_, err := loadDriver("libherd-no-such-driver.so.1")
	if !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("loadDriver = %v, want ErrNoLibrary", err)
	}
	for _, want := range []string{"no NVIDIA driver", "libherd-no-such-driver.so.1", "/nonexistent/herd-cuda", LibsEnv} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// gpu returns the real driver, or skips the test saying why there is none.
func gpu(t *testing.T) *Driver {
	t.Helper()
	d, err := LoadDriver()
	if err != nil {
		t.Skipf("needs a CUDA device: %v", err)
	}
	return d
}

// On a GPU host the driver lists at least one device, each with its identity; an index
// past the last is ErrNoDevice.
func TestDevicesGPU(t *testing.T) {
	checkDevices(t, gpu(t))
}

func TestMemoryGPU(t *testing.T) {
	d := gpu(t)
	ctx, err := d.Retain(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Release()
	checkMemory(t, NewMemory(ctx))
}

// fake returns the driver of testdata/fakecuda.c (host memory behind the driver API),
// built into a temporary folder, with devices GPUs; it skips the test where no C
// compiler can build it.
func fake(t *testing.T, devices string) (*Driver, error) {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("needs a C compiler to build the fake driver: %v", err)
	}
	// The real driver, where there is one, is loaded first: Load makes a library's
	// symbols global, and the fake's cuInit and the rest must not stand in for the real
	// driver's own when it loads.
	LoadDriver()
	dir := t.TempDir()
	out, err := exec.Command(cc, "-shared", "-fPIC", "-O1", "-o", filepath.Join(dir, "libherd-fakecuda.so"), filepath.Join("testdata", "fakecuda.c")).CombinedOutput()
	if err != nil {
		t.Fatalf("building the fake driver: %v\n%s", err, out)
	}
	t.Setenv(LibsEnv, dir)
	t.Setenv("HERD_FAKE_CUDA_DEVICES", devices)
	return loadDriver("libherd-fakecuda.so")
}

// The bindings against the fake driver: discovery, errors named by the driver, memory and
// a launch whose parameters the fake reads as C does.
func TestFakeDriver(t *testing.T) {
	d, err := fake(t, "2")
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 12040 {
		t.Errorf("Version = %d, want 12040", d.Version)
	}
	devs := checkDevices(t, d)
	want := Device{Index: 1, Name: "herd fake GPU 1", Major: 9, Minor: 0, SMs: 132, Memory: 80 << 30, handle: 1}
	if len(devs) != 2 || devs[1] != want {
		t.Errorf("Devices = %+v, want 2, the second %+v", devs, want)
	}
	if s := devs[1].String(); s != "cuda:1 herd fake GPU 1 (compute capability 9.0, 80.0 GiB)" {
		t.Errorf("String = %q", s)
	}

	ctx, err := d.Retain(1)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Release()
	checkMemory(t, NewMemory(ctx))
	var allocations func() int32
	lib, err := Load("libherd-fakecuda.so")
	if err != nil {
		t.Fatal(err)
	}
	if err := lib.Bind(&allocations, "herd_fake_allocations"); err != nil {
		t.Fatal(err)
	}
	if n := allocations(); n != 0 {
		t.Errorf("%d allocations left after Close", n)
	}
}

// cuInit's failure is an *Error naming the call and the driver's name and text for it.
func TestFakeNoDevice(t *testing.T) {
	_, err := fake(t, "0")
	var e *Error
	if !errors.As(err, &e) || e.Call != "cuInit" || e.Code != 100 {
		t.Fatalf("loadDriver = %v, want cuInit's CUDA_ERROR_NO_DEVICE", err)
	}
	if want := "cuda: cuInit: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// The fake's axpb reads its parameters as C lays them out.
func TestFakeLaunch(t *testing.T) {
	d, err := fake(t, "1")
	if err != nil {
		t.Fatal(err)
	}
	checkLaunch(t, d)
}

func TestLaunchGPU(t *testing.T) {
	checkLaunch(t, gpu(t))
}

// checkLaunch loads testdata/axpb.ptx on d's first device and launches its kernel on a
// stream, with parameters of each kind it takes (device addresses, float32, float64,
// int32), over fewer threads than elements; a missing kernel and a Go int parameter are
// errors.
func checkLaunch(t *testing.T, d *Driver) {
	t.Helper()
	ctx, err := d.Retain(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Release()
	mem := NewMemory(ctx)
	defer mem.Close()

	ptx, err := os.ReadFile(filepath.Join("testdata", "axpb.ptx"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ctx.LoadModule(ptx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctx.Function(m, "nope"); err == nil || !strings.Contains(err.Error(), "kernel nope: cuda: cuModuleGetFunction: CUDA_ERROR_NOT_FOUND") {
		t.Errorf("Function(nope) = %v", err)
	}
	f, err := ctx.Function(m, "axpb")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ctx.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	x, y := kernels.Alloc[float32](mem, 5), kernels.Alloc[float32](mem, 5)
	kernels.Upload(mem, x, []float32{1, 2, 3, 4, 5})
	if err := ctx.Launch(f, Dim3{2, 1, 1}, Dim3{2, 1, 1}, 0, s, y.Addr(), x.Addr(), float32(2), float64(0.5), int32(5)); err != nil {
		t.Fatal(err)
	}
	if err := ctx.Synchronize(s); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, 5)
	kernels.Download(mem, got, y)
	if want := []float32{2.5, 4.5, 6.5, 8.5, 0}; !equal(got, want) {
		t.Errorf("4 threads of axpb over 5 = %v, want %v", got, want)
	}
	if err := ctx.Launch(f, Dim3{1, 1, 1}, Dim3{1, 1, 1}, 0, s, y.Addr(), x.Addr(), float32(2), 0.5, 5); err == nil || !strings.Contains(err.Error(), "argument 4 is a int") {
		t.Errorf("Launch with a Go int = %v", err)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkDevices checks d's device list (at least one device, each read back alike by
// Device) and that the index past the last is ErrNoDevice naming the count.
func checkDevices(t *testing.T, d *Driver) []Device {
	t.Helper()
	devs, err := d.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) == 0 {
		t.Fatal("the driver lists no device")
	}
	for i, v := range devs {
		if v.Index != i || v.Name == "" || v.Major < 5 || v.SMs <= 0 || v.Memory == 0 {
			t.Errorf("device %d: %+v", i, v)
		}
		if w, err := d.Device(i); err != nil || w != v {
			t.Errorf("Device(%d) = %+v, %v; Devices listed %+v", i, w, err, v)
		}
		t.Logf("%s, %d SMs", v, v.SMs)
	}
	_, err = d.Device(len(devs))
	if !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), fmt.Sprintf("lists %d", len(devs))) {
		t.Errorf("Device(%d) = %v, want ErrNoDevice saying it lists %d", len(devs), err, len(devs))
	}
	return devs
}

// checkMemory checks mem against kernels.Memory's contract: AllocBytes zeroed and aligned
// to 64, and bytes round-tripping through Upload, Copy, Zero and Download at offsets
// inside one allocation (views), kept in step with a host mirror; then Free and Close.
func checkMemory(t *testing.T, mem *Memory) {
	t.Helper()
	const n = 1000
	a := mem.AllocBytes(n)
	if !a.OnDevice() || a.Len() != n || a.Addr()%64 != 0 {
		t.Fatalf("AllocBytes(%d) = %d bytes at %#x, on device %t", n, a.Len(), a.Addr(), a.OnDevice())
	}
	got := make([]byte, n)
	mem.DownloadBytes(got, a)
	mirror := make([]byte, n)
	if !bytes.Equal(got, mirror) {
		t.Fatal("AllocBytes is not zeroed")
	}

	src := make([]byte, 200)
	for i := range src {
		src[i] = byte(i*7 + 1)
	}
	mem.UploadBytes(a.Slice(100, 300), src)
	copy(mirror[100:300], src)
	kernels.Copy(mem, a.Slice(501, 701), a.Slice(100, 300))
	copy(mirror[501:701], mirror[100:300])
	kernels.Zero(mem, a.Slice(150, 163))
	clear(mirror[150:163])
	mem.DownloadBytes(got, a)
	if !bytes.Equal(got, mirror) {
		t.Fatalf("after Upload, Copy and Zero at offsets: %v, want %v", got, mirror)
	}
	part := make([]byte, 20)
	mem.DownloadBytes(part, a.Slice(140, 160))
	if !bytes.Equal(part, mirror[140:160]) {
		t.Errorf("Download of [140:160] = %v, want %v", part, mirror[140:160])
	}

	f := kernels.Alloc[float32](mem, 33)
	vals := make([]float32, 32)
	for i := range vals {
		vals[i] = float32(i) - 0.5
	}
	kernels.Upload(mem, f.From(1), vals)
	if back := kernels.ToHost(mem, f); back[0] != 0 || !equal(back[1:], vals) {
		t.Errorf("float32 round trip at offset 1: %v", back)
	}
	if got := mem.InUse(); got != n+33*4 {
		t.Errorf("InUse = %d, want %d", got, n+33*4)
	}

	for name, bad := range map[string]func(){
		"Free of a view":     func() { mem.Free(a.From(1)) },
		"Upload into a host": func() { mem.UploadBytes(kernels.HostBuf(make([]byte, 4)), make([]byte, 4)) },
		"Copy of unequal":    func() { mem.CopyBytes(a.Slice(0, 4), a.Slice(8, 16)) },
	} {
		if !panics(bad) {
			t.Errorf("%s does not panic", name)
		}
	}

	mem.Free(a)
	if got := mem.InUse(); got != 33*4 {
		t.Errorf("InUse after Free = %d, want %d", got, 33*4)
	}
	if err := mem.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mem.InUse(); got != 0 {
		t.Errorf("InUse after Close = %d", got)
	}
}

func panics(f func()) (yes bool) {
	defer func() { yes = recover() != nil }()
	f()
	return false
}

// Loading the driver numbers devices by PCI bus, as NVML does, unless the user chose an
// order: the C library, which the driver reads it through, sees the setting.
func TestDeviceOrder(t *testing.T) {
	libc, err := Load("libc.so.6")
	if err != nil {
		t.Fatal(err)
	}
	var getenv func(name string) string
	if err := libc.Bind(&getenv, "getenv"); err != nil {
		t.Fatal(err)
	}
	for set, want := range map[string]string{"": "PCI_BUS_ID", "FASTEST_FIRST": "FASTEST_FIRST"} {
		t.Setenv("CUDA_DEVICE_ORDER", set)
		if _, err := fake(t, "1"); err != nil {
			t.Fatal(err)
		}
		if got := getenv("CUDA_DEVICE_ORDER"); got != want {
			t.Errorf("CUDA_DEVICE_ORDER=%q before loading, %q after; want %q", set, got, want)
		}
	}
}
