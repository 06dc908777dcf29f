//go:build !linux

package cpu

import "time"

// threadCPUTime: not measured on this OS.
func threadCPUTime() (time.Duration, bool) { return 0, false }
