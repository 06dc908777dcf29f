// Package device chooses the compute backend from train.device: the one place that
// imports a backend's package (kernels/cpu; kernels/cuda, which so far only finds the
// devices). Everything else reaches numbers through kernels.Backend.
package device

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/cpu"
	"github.com/herdml/herd/kernels/cuda"
)

// Key is the config key that names the device; the user errors of Parse and Open name it.
const Key = "train.device"

// Allowed lists the values Key takes, as its user errors say.
const Allowed = "cpu, cuda, cuda:N (N a GPU index)"

// Spec is a parsed train.device value.
type Spec struct {
	CUDA  bool // a GPU; false: the CPU
	Index int  // the GPU's index in the CUDA driver's order, by PCI bus as NVML's (cuda = cuda:0)
}

// String is the value as train.device writes it: "cpu" or "cuda:N".
func (s Spec) String() string {
	if !s.CUDA {
		return "cpu"
	}
	return fmt.Sprintf("cuda:%d", s.Index)
}

// Parse reads a train.device value: "cpu", "cuda" or "cuda:N" with N a GPU index. Any
// other value is a user error naming Key and the allowed values. It checks the spelling
// only: whether this host has that device is Open's to say, so that a GPU run can be
// planned and validated anywhere.
func Parse(spec string) (Spec, error) {
	switch {
	case spec == "cpu":
		return Spec{}, nil
	case spec == "cuda":
		return Spec{CUDA: true}, nil
	case strings.HasPrefix(spec, "cuda:"):
		n, err := strconv.Atoi(strings.TrimPrefix(spec, "cuda:"))
		if err == nil && n >= 0 && strconv.Itoa(n) == strings.TrimPrefix(spec, "cuda:") {
			return Spec{CUDA: true, Index: n}, nil
		}
	}
	return Spec{}, usererr.New(Key, "unknown device %q; allowed: %s", spec, Allowed)
}

// Open returns the float32 backend that the train.device value spec names. A device this
// host cannot run on is a one-line user error naming Key and what the CUDA driver found:
// no driver library, the driver's error, no device N, or the device, on which this herd
// cannot train yet.
func Open(spec string) (kernels.Backend[float32], error) {
	s, err := Parse(spec)
	if err != nil {
		return nil, err
	}
	if !s.CUDA {
		return CPU[float32](), nil
	}
	devs, err := cuda.Devices()
	return nil, noCUDA(spec, s.Index, devs, err)
}

// noCUDA is Open's refusal of spec, GPU index, on a host whose CUDA driver listed devs
// (or failed to, with err): what was found, and what to set instead.
func noCUDA(spec string, index int, devs []cuda.Device, err error) error {
	var found string
	var e *cuda.Error
	switch {
	case errors.As(err, &e):
		found = fmt.Sprintf("the CUDA driver's %s fails: %s (%s)", e.Call, e.Name, e.Text)
	case err != nil:
		found = err.Error()
	case index >= len(devs):
		names := make([]string, len(devs))
		for i, d := range devs {
			names[i] = d.String()
		}
		found = fmt.Sprintf("no device %d: the CUDA driver lists %d", index, len(devs))
		if len(devs) > 0 {
			found += ": " + strings.Join(names, ", ")
		}
	default:
		found = fmt.Sprintf("found %s, but this herd's CUDA backend is not complete yet (docs/gpu.md)", devs[index])
	}
	return usererr.New(Key, "%s: %s; set %s: cpu", spec, found, Key)
}

// CPU returns the CPU backend for element type F: float32 for training, float64 for the
// gradient checks.
func CPU[F kernels.Float]() kernels.Backend[F] { return cpu.New[F]() }

// CheckEnv reports a HERD_KERNELS value that names no CPU kernel available on this
// machine (a user error naming HERD_KERNELS); the CPU backend then runs the best one.
// Commands call it at start to tell the user.
func CheckEnv() error { return cpu.CheckEnv() }
