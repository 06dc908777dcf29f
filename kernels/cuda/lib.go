// Package cuda is herd's NVIDIA GPU backend in the making: the CUDA libraries loaded at
// run time (no cgo against the CUDA toolkit, so herd builds and tests anywhere), the
// kernels' CUDA C sources compiled by NVRTC for the device in use, and the driver's memory.
// See docs/gpu.md for what works today and what a GPU must still measure.
package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebitengine/purego"
)

// LibsEnv names the folders, separated by ':', searched first for the CUDA libraries.
const LibsEnv = "HERD_CUDA_LIBS"

// ErrNoLibrary says that a CUDA library was not found in any folder searched.
var ErrNoLibrary = errors.New("CUDA library not found")

// Library is a shared library loaded with dlopen.
type Library struct {
	Path   string // the file loaded, or the bare name the system loader resolved
	handle uintptr
}

// searchDirs are the folders Load tries, in order: $HERD_CUDA_LIBS, $CUDA_HOME/lib64,
// /usr/local/cuda/lib64, then each pip-installed nvidia-* wheel's lib folder under the
// Python site-packages folders named by $HERD_CUDA_WHEELS (default: none). After them
// Load tries the bare file names, which the system loader resolves through ld.so.cache
// and LD_LIBRARY_PATH (Debian's packages, the driver's libcuda.so.1).
func searchDirs() []string {
	var dirs []string
	for _, d := range strings.Split(os.Getenv(LibsEnv), ":") {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	if h := os.Getenv("CUDA_HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, "lib64"))
	}
	dirs = append(dirs, "/usr/local/cuda/lib64")
	for _, sp := range strings.Split(os.Getenv("HERD_CUDA_WHEELS"), ":") {
		if sp == "" {
			continue
		}
		libs, _ := filepath.Glob(filepath.Join(sp, "nvidia", "*", "lib"))
		dirs = append(dirs, libs...)
	}
	return dirs
}

// Load opens the first of names (file names such as "libnvrtc.so.12") found in the
// folders searchDirs lists, else the first the system loader finds. The error wraps
// ErrNoLibrary and says where it looked.
func Load(names ...string) (*Library, error) {
	dirs := searchDirs()
	var tried []string
	for _, dir := range dirs {
		for _, n := range names {
			p := filepath.Join(dir, n)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			if err != nil {
				return nil, fmt.Errorf("cuda: loading %s: %w", p, err)
			}
			return &Library{Path: p, handle: h}, nil
		}
	}
	for _, n := range names {
		h, err := purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return &Library{Path: n, handle: h}, nil
		}
		tried = append(tried, n)
	}
	return nil, fmt.Errorf("%w: %s in %s, nor by the system loader (set %s to the folder holding it)",
		ErrNoLibrary, strings.Join(tried, " or "), strings.Join(dirs, ", "), LibsEnv)
}

// Bind sets *fptr, a pointer to a func variable, to the library's function symbol: the
// function purego calls with the C calling convention. A missing symbol is an error
// naming it and the library (an older library than herd needs).
func (l *Library) Bind(fptr any, symbol string) error {
	sym, err := purego.Dlsym(l.handle, symbol)
	if err != nil {
		return fmt.Errorf("cuda: %s has no %s: %w", l.Path, symbol, err)
	}
	purego.RegisterFunc(fptr, sym)
	return nil
}
