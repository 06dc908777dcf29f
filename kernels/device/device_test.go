package device

import (
	"errors"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/gpu"
	"github.com/herdml/herd/internal/usererr"
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

// This herd has no CUDA backend: a cuda value is refused on every host, with what the host
// has, on one line.
func TestOpenCUDA(t *testing.T) {
	for _, spec := range []string{"cuda", "cuda:1"} {
		be, err := Open(spec)
		var u *usererr.Error
		if be != nil || !errors.As(err, &u) || u.Where != Key || !strings.HasPrefix(u.What, spec+": ") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("Open(%q) = %v, %v; want a one-line user error at %s", spec, be, err, Key)
		}
		if _, lerr := gpu.List(); errors.Is(lerr, gpu.ErrNoDriver) && !strings.Contains(u.What, gpu.ErrNoDriver.Error()) {
			t.Errorf("no driver here, but Open(%q) says %q", spec, u.What)
		}
	}
}

// The refusal names what NVML found: no driver, no GPU, or the GPUs it lists.
func TestNoCUDAMessage(t *testing.T) {
	h := gpu.Host{Driver: "550.54", Devices: []gpu.Device{{Index: 0, Name: "NVIDIA H100"}, {Index: 1, Name: "NVIDIA H100"}}}
	for _, c := range []struct {
		h    gpu.Host
		err  error
		want []string
	}{
		{gpu.Host{}, gpu.ErrNoDriver, []string{"cuda: no NVIDIA driver", "set train.device: cpu"}},
		{gpu.Host{Driver: "550.54"}, nil, []string{"cuda: NVML (driver 550.54) lists no GPU"}},
		{h, nil, []string{"cuda: NVML (driver 550.54) lists cuda:0 NVIDIA H100, cuda:1 NVIDIA H100", "no CUDA backend"}},
	} {
		msg := noCUDA("cuda", c.h, c.err).Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q lacks %q", msg, w)
			}
		}
	}
}
