package workflows

import (
	"strings"
	"testing"
)

// recoverPanic names the frame that panicked also for the runtime's own panics, which
// start inside the runtime (runtime.goPanicIndex, runtime.makeslice).
func TestRecoverPanicNamesTheFrame(t *testing.T) {
	for name, fault := range map[string]func(n int){
		"index":     func(n int) { _ = make([]int, 1)[n] },
		"makeslice": func(n int) { _ = make([]float32, -n) },
	} {
		err := func() (err error) {
			defer recoverPanic(&err)
			fault(3)
			return nil
		}()
		if err == nil || !strings.Contains(err.Error(), "TestRecoverPanicNamesTheFrame.func") || !strings.Contains(err.Error(), "(segment_test.go:") {
			t.Errorf("%s: %v, want the test's function and line", name, err)
		}
	}
}
