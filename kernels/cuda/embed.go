package cuda

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/herdml/herd/internal/usererr"
)

// sources are the kernels' CUDA C sources, compiled by NVRTC when a device first needs
// them, so the herd binary carries its GPU kernels without the CUDA toolkit at build time,
// and src/common.cuh, the helpers they share, which Kernel puts before each of them.
//
//go:embed src/*.cu src/common.cuh
var sources embed.FS

// commonFile is the shared helpers' file in sources.
const commonFile = "common.cuh"

// srcDir is the sources' folder in the repository: NVRTC's messages name a source by it,
// so that a compile error points at the file to fix.
const srcDir = "kernels/cuda/src/"

// Sources lists the embedded kernel sources' file names ("rows.cu"), sorted.
func Sources() []string {
	names, err := fs.Glob(sources, "src/*.cu")
	if err != nil {
		panic(err) // the pattern is valid
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}

// Cache compiles the embedded sources with NVRTC and keeps each result in a folder, so
// that a kernel is compiled once per source, options and NVRTC version, not once per run.
type Cache struct {
	Dir   string // the folder holding the compiled kernels
	nvrtc *NVRTC
}

// DefaultCacheDir is herd/cuda in the user's cache folder ($XDG_CACHE_HOME, else
// ~/.cache, on Linux).
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", usererr.New("CUDA kernel cache", "%v: set $XDG_CACHE_HOME to a writable folder", err)
	}
	return filepath.Join(dir, "herd", "cuda"), nil
}

// NewCache returns a cache in dir, created when the first kernel is written, compiling
// with n.
func NewCache(n *NVRTC, dir string) *Cache {
	return &Cache{Dir: dir, nvrtc: n}
}

// Kernel returns the embedded source file compiled for o: PTX or CUBIN as o.Arch asks
// (see Options), read from the cache folder when it is there, else compiled and written
// there. The file is compiled after common.cuh, with a #line directive so that NVRTC's
// messages give the file's own line numbers.
func (c *Cache) Kernel(file string, o Options) ([]byte, error) {
	src, err := sources.ReadFile("src/" + file)
	if err != nil {
		return nil, fmt.Errorf("cuda: no embedded kernel source %s: %w", file, err)
	}
	common, err := sources.ReadFile("src/" + commonFile)
	if err != nil {
		panic(err) // embedded above
	}
	whole := fmt.Sprintf("%s\n#line 1 %q\n%s", common, srcDir+file, src)
	return c.compile(srcDir+file, whole, o)
}

// compile is Kernel for any source: name is the file name NVRTC's messages give it.
//
// The file is named by the SHA-256 of the NVRTC version, the options and the source, so a
// changed kernel, option or library never meets an old result, and two processes that
// compile the same kernel write the same bytes. A file is written under a temporary name
// and renamed when complete, so a reader finds the whole result or none.
func (c *Cache) compile(name, src string, o Options) ([]byte, error) {
	args, err := o.args()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	// Each field with its length before it: no two different inputs hash the same bytes.
	fmt.Fprintf(h, "%d:%s", len(c.nvrtc.Version()), c.nvrtc.Version())
	for _, a := range args {
		fmt.Fprintf(h, "%d:%s", len(a), a)
	}
	fmt.Fprintf(h, "%d:%s", len(src), src)
	ext := ".ptx"
	if o.cubin() {
		ext = ".cubin"
	}
	path := filepath.Join(c.Dir, hex.EncodeToString(h.Sum(nil))+ext)

	out, err := os.ReadFile(path)
	if err == nil {
		return out, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cuda: reading the kernel cache: %w", err)
	}
	out, err = c.nvrtc.Compile(name, src, o)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(path, out); err != nil {
		return nil, fmt.Errorf("cuda: writing the kernel cache (the folder is %s): %w", c.Dir, err)
	}
	return out, nil
}

// writeAtomic writes data to path through a temporary file in the same folder, synced
// before the rename, so that path never holds part of data, even after a crash.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
