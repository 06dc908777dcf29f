package cuda

import (
	"fmt"
	"regexp"
	"runtime"
	"strings"
)

// nvrtcNames are the NVRTC libraries herd knows, newest first: CUDA 12's (the toolkit and
// the nvidia-cuda-nvrtc-cu12 wheel) and CUDA 11's, whose soname stayed libnvrtc.so.11.2
// from 11.2 to 11.8 (Debian's libnvrtc11.2 package is 11.8).
var nvrtcNames = []string{"libnvrtc.so.12", "libnvrtc.so.11.2"}

// NVRTC is the loaded NVRTC library, which compiles CUDA C++ source to PTX or CUBIN at
// run time, without the CUDA toolkit's nvcc or headers.
type NVRTC struct {
	Path         string // the library file loaded
	Major, Minor int    // its version, e.g. 11 and 8

	// The C functions, bound by LoadNVRTC. Each returns an nvrtcResult, 0 for success.
	// A program is an opaque nvrtcProgram handle.
	version           func(major, minor *int32) int32
	createProgram     func(prog *uintptr, src, name string, numHeaders int32, headers, includeNames **byte) int32
	compileProgram    func(prog uintptr, numOptions int32, options **byte) int32
	getPTXSize        func(prog uintptr, size *uintptr) int32
	getPTX            func(prog uintptr, ptx *byte) int32
	getCUBINSize      func(prog uintptr, size *uintptr) int32
	getCUBIN          func(prog uintptr, cubin *byte) int32
	getProgramLogSize func(prog uintptr, size *uintptr) int32
	getProgramLog     func(prog uintptr, log *byte) int32
	destroyProgram    func(prog *uintptr) int32
	getErrorString    func(result int32) string
}

// LoadNVRTC loads NVRTC from the folders Load searches and binds its functions. Every
// library nvrtcNames lists has all of them (CUBIN output came in CUDA 11.1).
func LoadNVRTC() (*NVRTC, error) {
	lib, err := Load(nvrtcNames...)
	if err != nil {
		return nil, err
	}
	n := &NVRTC{Path: lib.Path}
	for _, b := range []struct {
		fptr   any
		symbol string
	}{
		{&n.version, "nvrtcVersion"},
		{&n.createProgram, "nvrtcCreateProgram"},
		{&n.compileProgram, "nvrtcCompileProgram"},
		{&n.getPTXSize, "nvrtcGetPTXSize"},
		{&n.getPTX, "nvrtcGetPTX"},
		{&n.getCUBINSize, "nvrtcGetCUBINSize"},
		{&n.getCUBIN, "nvrtcGetCUBIN"},
		{&n.getProgramLogSize, "nvrtcGetProgramLogSize"},
		{&n.getProgramLog, "nvrtcGetProgramLog"},
		{&n.destroyProgram, "nvrtcDestroyProgram"},
		{&n.getErrorString, "nvrtcGetErrorString"},
	} {
		if err := lib.Bind(b.fptr, b.symbol); err != nil {
			return nil, err
		}
	}
	var major, minor int32
	if err := n.check(n.version(&major, &minor), "nvrtcVersion"); err != nil {
		return nil, fmt.Errorf("cuda: %s: %w", n.Path, err)
	}
	n.Major, n.Minor = int(major), int(minor)
	return n, nil
}

// Version is NVRTC's version as "major.minor", e.g. "11.8".
func (n *NVRTC) Version() string { return fmt.Sprintf("%d.%d", n.Major, n.Minor) }

// check turns an nvrtcResult into nil or an error naming the call and NVRTC's message.
func (n *NVRTC) check(result int32, call string) error {
	if result == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s (nvrtcResult %d)", call, n.getErrorString(result), result)
}

// Options are what a compile is asked for besides the source.
type Options struct {
	// Arch is the GPU architecture: "compute_90" compiles to PTX, which the driver
	// finishes for the device when it loads it, so it runs on 9.0 and every later device;
	// "sm_90" compiles to a CUBIN, machine code for compute capability 9.0 alone, which a
	// driver older than this NVRTC (of its CUDA major version) can still load.
	Arch string
	// Defines are preprocessor definitions, "NAME" or "NAME=VALUE", passed as -D in order.
	Defines []string
}

var archPattern = regexp.MustCompile(`^(compute|sm)_[0-9]+[a-z]?$`)

// cubin reports whether the options ask for a CUBIN rather than PTX.
func (o Options) cubin() bool { return strings.HasPrefix(o.Arch, "sm_") }

// args are NVRTC's command-line options for o. Every source is C++17 and includes no
// header: NVRTC knows CUDA's built-ins without one, and Debian's NVRTC ships none.
func (o Options) args() ([]string, error) {
	if !archPattern.MatchString(o.Arch) {
		return nil, fmt.Errorf("cuda: architecture %q: want compute_XY (PTX) or sm_XY (CUBIN)", o.Arch)
	}
	args := []string{"--gpu-architecture=" + o.Arch, "-std=c++17"}
	for _, d := range o.Defines {
		args = append(args, "-D"+d)
	}
	return args, nil
}

// Compile compiles src, whose file name is name, and returns the PTX (ending with the NUL
// the driver's cuModuleLoadData wants) or CUBIN that o.Arch asks for. A source that does
// not compile is an error naming the file, quoting NVRTC's log, which points at each
// line in error as name(line).
func (n *NVRTC) Compile(name, src string, o Options) ([]byte, error) {
	args, err := o.args()
	if err != nil {
		return nil, err
	}
	var prog uintptr
	if err := n.check(n.createProgram(&prog, src, name, 0, nil, nil), "nvrtcCreateProgram"); err != nil {
		return nil, fmt.Errorf("cuda: compiling %s: %w", name, err)
	}
	defer n.destroyProgram(&prog)

	var pin runtime.Pinner
	defer pin.Unpin()
	if result := n.compileProgram(prog, int32(len(args)), cStrings(&pin, args)); result != 0 {
		failed := fmt.Sprintf("cuda: compiling %s for %s with NVRTC %s: %s",
			name, o.Arch, n.Version(), n.getErrorString(result))
		log, err := n.sized(prog, n.getProgramLogSize, n.getProgramLog, "nvrtcGetProgramLog")
		if err != nil {
			return nil, fmt.Errorf("%s; reading the log: %w", failed, err)
		}
		return nil, fmt.Errorf("%s\n%s", failed, strings.TrimSpace(strings.TrimRight(string(log), "\x00")))
	}
	var out []byte
	if o.cubin() {
		out, err = n.sized(prog, n.getCUBINSize, n.getCUBIN, "nvrtcGetCUBIN")
	} else {
		out, err = n.sized(prog, n.getPTXSize, n.getPTX, "nvrtcGetPTX")
	}
	if err != nil {
		return nil, fmt.Errorf("cuda: compiling %s: %w", name, err)
	}
	return out, nil
}

// sized reads one of a program's outputs through its size and copy functions, NVRTC's
// pattern for the PTX, the CUBIN and the log.
func (n *NVRTC) sized(prog uintptr, size func(uintptr, *uintptr) int32, get func(uintptr, *byte) int32, call string) ([]byte, error) {
	var sz uintptr
	if err := n.check(size(prog, &sz), call+"Size"); err != nil {
		return nil, err
	}
	if sz == 0 {
		return nil, fmt.Errorf("%s: empty", call)
	}
	buf := make([]byte, sz)
	if err := n.check(get(prog, &buf[0]), call); err != nil {
		return nil, err
	}
	return buf, nil
}

// cStrings returns a C array (a char**) of NUL-terminated copies of ss. The copies and
// the array are pinned with pin, so that the array, Go memory holding Go pointers, may be
// passed to C and stays put and alive until the caller unpins it.
func cStrings(pin *runtime.Pinner, ss []string) **byte {
	ptrs := make([]*byte, len(ss))
	for i, s := range ss {
		b := append([]byte(s), 0)
		pin.Pin(&b[0])
		ptrs[i] = &b[0]
	}
	pin.Pin(&ptrs[0])
	return &ptrs[0]
}
