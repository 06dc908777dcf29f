// Package device chooses the compute backend from train.device: the one place that
// imports a backend's package (kernels/cpu, later kernels/cuda). Everything else reaches
// numbers through kernels.Backend.
package device

import (
	"github.com/herdml/herd/kernels"
	"github.com/herdml/herd/kernels/cpu"
)

// CPU returns the CPU backend for element type F: float32 for training, float64 for the
// gradient checks.
func CPU[F kernels.Float]() kernels.Backend[F] { return cpu.New[F]() }
