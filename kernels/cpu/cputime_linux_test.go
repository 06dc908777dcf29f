package cpu

import (
	"syscall"
	"time"
	"unsafe"
)

// threadCPUTime is the CPU time the calling OS thread has used (CLOCK_THREAD_CPUTIME_ID).
// On a machine shared with other work it measures a single-threaded kernel without the
// time the scheduler gave to others.
func threadCPUTime() (time.Duration, bool) {
	const clockThreadCPUTime = 3
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
