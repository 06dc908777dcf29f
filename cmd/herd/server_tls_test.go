package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/herdml/herd/internal/testpki"
)

// `herd server` refuses certificates it cannot serve before it creates anything: a
// certificate without its key; one that its own system worker could not present under
// --tls-ca; TLS without client certificates on an address other than loopback, which
// would let anyone who reaches it in.
func TestServerTLSRefused(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t, dir, "ca")
	srvCert, srvKey := ca.Issue(t, "server", "127.0.0.1")
	other := testpki.New(t, t.TempDir(), "other-ca")
	home := filepath.Join(dir, "home")
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--tls-cert", srvCert}, []string{"--tls-cert/--tls-key", "needs its key"}},
		{[]string{"--tls-cert", srvCert, "--tls-key", srvKey, "--tls-ca", other.File}, []string{"--tls-cert " + srvCert, "clientAuth", other.File}},
		{[]string{"--tls-cert", srvCert, "--tls-key", srvKey, "--listen", "0.0.0.0"}, []string{"--listen 0.0.0.0", "no authentication", "--tls-ca"}},
	} {
		stdout, stderr, status := herd(t, dir, append([]string{"server", "--state-dir", home}, c.args...)...)
		wantUserError(t, stdout, stderr, status, c.want...)
	}
	if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused server left its state dir: %v", err)
	}
}
