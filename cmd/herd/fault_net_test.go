package main

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// `herd server` on a port that another process holds: a user error naming the address,
// at once, instead of the server exiting with its cause only in server.log.
func TestServerPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr)
	stdout, stderr, status := herd(t, t.TempDir(), "server", "--state-dir", t.TempDir(), "--port", strconv.Itoa(addr.Port))
	wantUserError(t, stdout, stderr, status, addr.String(), "in use", "--port")
}

// `herd server --listen 0.0.0.0` would expose a frontend without authentication: refused,
// before anything binds, unless mutual TLS or --insecure says so.
func TestServerNotLoopback(t *testing.T) {
	stdout, stderr, status := herd(t, t.TempDir(), "server", "--state-dir", t.TempDir(), "--listen", "0.0.0.0")
	wantUserError(t, stdout, stderr, status, "--listen 0.0.0.0", "no authentication", "--tls-ca", "--insecure")
	stdout, stderr, status = herd(t, t.TempDir(), "server", "--state-dir", t.TempDir(), "--listen", "localhost")
	wantUserError(t, stdout, stderr, status, "--listen localhost", "not an IP address")
}

// `herd worker --listen 0.0.0.0` without TLS: refused at start, naming the flags it needs,
// instead of failing every data-parallel run later.
func TestWorkerListenNotLoopback(t *testing.T) {
	t.Setenv("HERD_COLLECTIVE_TOKEN", "")
	stdout, stderr, status := herd(t, t.TempDir(), "worker", "--state-dir", t.TempDir(), "--listen", "0.0.0.0")
	wantUserError(t, stdout, stderr, status, "--listen 0.0.0.0", "--collective-cert", "--collective-key", "--collective-ca", "$HERD_COLLECTIVE_TOKEN")
	if strings.Contains(stderr, "no server") {
		t.Errorf("refused for want of a server, not for --listen: %s", stderr)
	}
}
