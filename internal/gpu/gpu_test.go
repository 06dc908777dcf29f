package gpu

import (
	"errors"
	"os"
	"testing"
)

// The test runs on whatever host it is given: without a driver List must say so with
// ErrNoDriver; with one, every device must report an identity and a plausible memory size.
func TestList(t *testing.T) {
	h, err := List()
	if errors.Is(err, ErrNoDriver) {
		if _, statErr := os.Stat("/dev/nvidiactl"); statErr == nil {
			t.Fatalf("List says no driver, but /dev/nvidiactl exists")
		}
		if len(h.Devices) != 0 {
			t.Fatalf("no driver but %d devices", len(h.Devices))
		}
		t.Log("no NVIDIA driver on this host; device fields not checked")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if h.Driver == "" {
		t.Error("empty driver version")
	}
	for _, d := range h.Devices {
		if d.Name == "" || d.UUID == "" {
			t.Errorf("device %d: name %q uuid %q", d.Index, d.Name, d.UUID)
		}
		if d.MemoryTotal == 0 || d.MemoryUsed > d.MemoryTotal {
			t.Errorf("device %d: memory %d of %d bytes", d.Index, d.MemoryUsed, d.MemoryTotal)
		}
		if d.Utilization > 100 {
			t.Errorf("device %d: utilisation %d%%", d.Index, d.Utilization)
		}
	}
}
