// Package device chooses the compute backend from train.device: the one place that
// imports a backend's package (kernels/cpu, later kernels/cuda). Everything else reaches
// numbers through kernels.Backend.
package device

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/herdml/herd/internal/gpu"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/cpu"
)

// Key is the config key that names the device; the user errors of Parse and Open name it.
const Key = "train.device"

// Allowed lists the values Key takes, as its user errors say.
const Allowed = "cpu, cuda, cuda:N (N a GPU index)"

// Spec is a parsed train.device value.
type Spec struct {
	CUDA  bool // a GPU; false: the CPU
	Index int  // the GPU's index in NVML's order (cuda = cuda:0)
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
// host cannot run on is a one-line user error naming Key and what the host has: this herd
// has no CUDA backend yet, so a cuda value says whether NVML finds a driver and which GPUs
// it lists.
func Open(spec string) (kernels.Backend[float32], error) {
	s, err := Parse(spec)
	if err != nil {
		return nil, err
	}
	if !s.CUDA {
		return CPU[float32](), nil
	}
	h, err := gpu.List()
	return nil, noCUDA(spec, h, err)
}

// noCUDA is Open's refusal of a cuda value on a host whose GPUs gpu.List reported as h
// (or failed to list with err): what was found, and what to set instead.
func noCUDA(spec string, h gpu.Host, err error) error {
	var found string
	switch {
	case err != nil:
		found = err.Error()
	case len(h.Devices) == 0:
		found = fmt.Sprintf("NVML (driver %s) lists no GPU", h.Driver)
	default:
		names := make([]string, len(h.Devices))
		for i, d := range h.Devices {
			names[i] = fmt.Sprintf("cuda:%d %s", d.Index, d.Name)
		}
		found = fmt.Sprintf("NVML (driver %s) lists %s, but this build of herd has no CUDA backend yet", h.Driver, strings.Join(names, ", "))
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
