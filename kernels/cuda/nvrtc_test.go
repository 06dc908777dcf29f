package cuda

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadNVRTC returns NVRTC, or skips the test with Load's reason where it is missing
// (.ci/run installs Debian's, so CI runs these tests).
func loadNVRTC(t *testing.T) *NVRTC {
	t.Helper()
	n, err := LoadNVRTC()
	if err != nil {
		t.Skipf("no NVRTC, so no kernel is compiled: %v", err)
	}
	return n
}

// Every embedded source compiles to PTX for Ampere (compute_80) and Hopper (compute_90),
// so a source NVRTC rejects fails here, on a machine with no GPU.
func TestCompileEverySource(t *testing.T) {
	n := loadNVRTC(t)
	t.Logf("NVRTC %s from %s", n.Version(), n.Path)
	c := NewCache(n, t.TempDir())
	for _, file := range Sources() {
		for _, arch := range []string{"compute_80", "compute_90"} {
			t.Run(file+"/"+arch, func(t *testing.T) {
				ptx, err := c.Kernel(file, Options{Arch: arch})
				if err != nil {
					t.Fatal(err)
				}
				target := ".target sm_" + strings.TrimPrefix(arch, "compute_")
				if !bytes.Contains(ptx, []byte(target)) || !bytes.HasSuffix(ptx, []byte{0}) {
					t.Errorf("PTX does not name %q or does not end with a NUL:\n%.300s", target, ptx)
				}
			})
		}
	}
}

// An sm_XY architecture gives a CUBIN, an ELF file, that holds the kernel's symbol.
func TestCompileCUBIN(t *testing.T) {
	n := loadNVRTC(t)
	cubin, err := NewCache(n, t.TempDir()).Kernel("elementwise.cu", Options{Arch: "sm_90"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(cubin, []byte("\x7fELF")) || !bytes.Contains(cubin, []byte("axpy_f32")) {
		t.Errorf("not a CUBIN holding axpy_f32: %.64q", cubin)
	}
}

// The cache: compiling the same source with the same options again reads the file back
// and calls no NVRTC function (the second cache's NVRTC has none bound, so a call would
// panic); a changed source, define or NVRTC version is a new file.
func TestCache(t *testing.T) {
	n := loadNVRTC(t)
	dir := t.TempDir()
	c := NewCache(n, dir)
	src := "extern \"C\" __global__ void k(float *y) { y[threadIdx.x] = VALUE; }\n"
	o := Options{Arch: "compute_80", Defines: []string{"VALUE=1.0f"}}
	files := func() int {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}

	first, err := c.compile("k.cu", src, o)
	if err != nil {
		t.Fatal(err)
	}
	if files() != 1 {
		t.Fatalf("%d files in the cache after one compile, want 1", files())
	}
	unbound := NewCache(&NVRTC{Major: n.Major, Minor: n.Minor}, dir)
	hit, err := unbound.compile("k.cu", src, o)
	if err != nil || !bytes.Equal(hit, first) {
		t.Fatalf("second compile = %d bytes, %v; want the first's %d bytes from the cache", len(hit), err, len(first))
	}

	newer := *n
	newer.Minor++
	for _, miss := range []struct {
		what string
		c    *Cache
		src  string
		o    Options
	}{
		{"changed source", c, src + "// a comment\n", o},
		{"changed define", c, src, Options{Arch: o.Arch, Defines: []string{"VALUE=2.0f"}}},
		{"changed architecture", c, src, Options{Arch: "compute_90", Defines: o.Defines}},
		{"changed NVRTC version", NewCache(&newer, dir), src, o},
	} {
		before := files()
		if _, err := miss.c.compile("k.cu", miss.src, miss.o); err != nil {
			t.Fatalf("%s: %v", miss.what, err)
		}
		if files() != before+1 {
			t.Errorf("%s: %d files in the cache, want %d (a miss writes one)", miss.what, files(), before+1)
		}
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmp) > 0 {
		t.Errorf("temporary files left in the cache: %v", tmp)
	}
}

// A source that does not compile is an error naming the file, the architecture, and
// quoting NVRTC's log at the line in error; nothing is cached.
func TestCompileError(t *testing.T) {
	n := loadNVRTC(t)
	dir := t.TempDir()
	src := "extern \"C\" __global__ void k(float *y) {\n  y[0] = 1.0f\n}\n" // no ';'
	_, err := NewCache(n, dir).compile("kernels/cuda/src/bad.cu", src, Options{Arch: "compute_90"})
	if err == nil {
		t.Fatal("a syntax error compiled")
	}
	for _, want := range []string{"compiling kernels/cuda/src/bad.cu for compute_90", "kernels/cuda/src/bad.cu(3): error"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("a failed compile left %d files in the cache", len(entries))
	}
}

// An architecture NVRTC would not recognise is refused before NVRTC is asked.
func TestOptionsArch(t *testing.T) {
	for _, arch := range []string{"", "90", "sm90", "compute_", "--gpu-architecture=sm_90", "sm_90 -G"} {
		if _, err := (Options{Arch: arch}).args(); err == nil {
			t.Errorf("architecture %q accepted", arch)
		}
	}
	for _, arch := range []string{"compute_80", "sm_90", "sm_90a"} {
		if _, err := (Options{Arch: arch}).args(); err != nil {
			t.Errorf("architecture %q: %v", arch, err)
		}
	}
}

// The default cache is herd/cuda in the user's cache folder.
func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/var/cache/someone")
	dir, err := DefaultCacheDir()
	if err != nil || dir != "/var/cache/someone/herd/cuda" {
		t.Errorf("DefaultCacheDir = %q, %v", dir, err)
	}
}
