package devserver

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// A frontend port in use is a user error naming the address, found before the server
// starts (no store is created) and leaving the state dir free for the next try; an IP
// other than loopback is refused unless Insecure says so, before anything binds.
func TestStartRefusals(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	_, err = Start(Options{StateDir: dir, Port: l.Addr().(*net.TCPAddr).Port})
	if !usererr.Is(err) || !strings.Contains(err.Error(), l.Addr().String()+": in use") {
		t.Fatalf("port in use: %v, want a user error naming %s", err, l.Addr())
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); !os.IsNotExist(err) {
		t.Errorf("the store was created before the ports were checked (%v)", err)
	}
	lock, err := lockStateDir(dir)
	if err != nil {
		t.Fatalf("state dir still locked after the refused start: %v", err)
	}
	lock.Close()

	for _, ip := range []string{"0.0.0.0", "::", "localhost"} {
		if _, err := Start(Options{StateDir: t.TempDir(), IP: ip}); !usererr.Is(err) || !strings.Contains(err.Error(), "--listen "+ip) {
			t.Errorf("IP %s: %v, want a user error naming --listen", ip, err)
		}
	}
}
