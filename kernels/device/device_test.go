package device

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels/cuda"
)

func TestParse(t *testing.T) {
	for spec, want := range map[string]Spec{"cpu": {}, "cuda": {CUDA: true}, "cuda:0": {CUDA: true}, "cuda:3": {CUDA: true, Index: 3}} {
		got, err := Parse(spec)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
	}
	for _, spec := range []string{"", "tpu", "CPU", "cuda:", "cuda:-1", "cuda:+1", "cuda:01", "cuda:x", "cuda0", "gpu"} {
		_, err := Parse(spec)
		var u *usererr.Error
		if !errors.As(err, &u) || u.Where != Key || !strings.Contains(u.What, Allowed) {
			t.Errorf("Parse(%q): %v, want a user error at %s listing %q", spec, err, Key, Allowed)
		}
	}
}

func TestOpenCPU(t *testing.T) {
	be, err := Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	if be.Device() != "cpu" || !strings.HasPrefix(be.Name(), "cpu/") {
		t.Errorf("Open(cpu) runs on %s (%s), want cpu", be.Device(), be.Name())
	}
	if _, err := Open("tpu"); !usererr.Is(err) {
		t.Errorf("Open(tpu): %v, want a user error", err)
	}
}

// This herd has no CUDA backend: a cuda value is refused on every host, with what the
// driver found, on one line.
func TestOpenCUDA(t *testing.T) {
	_, lerr := cuda.Devices()
	for _, spec := range []string{"cuda", "cuda:1"} {
		be, err := Open(spec)
		var u *usererr.Error
		if be != nil || !errors.As(err, &u) || u.Where != Key || !strings.HasPrefix(u.What, spec+": ") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("Open(%q) = %v, %v; want a one-line user error at %s", spec, be, err, Key)
		}
		if errors.Is(lerr, cuda.ErrNoLibrary) && !strings.Contains(u.What, "no NVIDIA driver: "+cuda.ErrNoLibrary.Error()+": "+cuda.DriverLib) {
			t.Errorf("no driver here, but Open(%q) says %q", spec, u.What)
		}
	}
}

// The refusal names what the driver found: no driver library, the driver's error, no
// device of that index (and those there are), or the device, which this herd cannot use.
func TestNoCUDAMessage(t *testing.T) {
	h100 := cuda.Device{Name: "NVIDIA H100 80GB HBM3", Major: 9, Minor: 0, SMs: 132, Memory: 80 << 30}
	devs := []cuda.Device{h100, h100}
	devs[1].Index = 1
	noInit := &cuda.Error{Call: "cuInit", Code: 100, Name: "CUDA_ERROR_NO_DEVICE", Text: "no CUDA-capable device is detected"}
	for _, c := range []struct {
		spec  string
		index int
		devs  []cuda.Device
		err   error
		want  string
	}{
		{"cuda", 0, nil, fmt.Errorf("no NVIDIA driver: %w: libcuda.so.1 in /usr/local/cuda/lib64", cuda.ErrNoLibrary),
			"cuda: no NVIDIA driver: CUDA library not found: libcuda.so.1 in /usr/local/cuda/lib64; set train.device: cpu"},
		{"cuda", 0, nil, noInit,
			"cuda: the CUDA driver's cuInit fails: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected); set train.device: cpu"},
		{"cuda:2", 2, devs, nil,
			"cuda:2: no device 2: the CUDA driver lists 2: cuda:0 NVIDIA H100 80GB HBM3 (compute capability 9.0, 80.0 GiB), cuda:1 NVIDIA H100 80GB HBM3 (compute capability 9.0, 80.0 GiB); set train.device: cpu"},
		{"cuda", 0, nil, nil, "cuda: no device 0: the CUDA driver lists 0; set train.device: cpu"},
		{"cuda:1", 1, devs, nil,
			"cuda:1: found cuda:1 NVIDIA H100 80GB HBM3 (compute capability 9.0, 80.0 GiB), but this herd's CUDA backend is not complete yet (docs/gpu.md); set train.device: cpu"},
	} {
		err := noCUDA(c.spec, c.index, c.devs, c.err)
		var u *usererr.Error
		if !errors.As(err, &u) || u.Where != Key || u.What != c.want {
			t.Errorf("noCUDA(%s) = %q\nwant %q", c.spec, err, Key+": "+c.want)
		}
	}
}
