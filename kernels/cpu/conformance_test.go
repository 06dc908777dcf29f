package cpu_test

import (
	"testing"

	"github.com/herdml/herd/kernels/backendtest"
	"github.com/herdml/herd/kernels/device"
)

// TestConformance runs the backend conformance suite on the CPU backend, in float32 (the
// trainer's) and float64 (the gradient checks').
func TestConformance(t *testing.T) {
	t.Run("float32", func(t *testing.T) { backendtest.Run(t, device.CPU[float32]()) })
	t.Run("float64", func(t *testing.T) { backendtest.Run(t, device.CPU[float64]()) })
}
