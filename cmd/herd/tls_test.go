package main

import (
	"encoding/json"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/testpki"
	"github.com/herdml/herd/workflows"
)

// Must-show 6 of issue 20: `herd server` with mutual TLS, on loopback by default and
// saying so. A client with a certificate of the server's CA connects with the --tls-*
// flags (also through the state dir), or with Temporal's environment variables, and a
// worker and `herd run` train a run through it; a client without a certificate, with one
// from another CA, or without TLS at all is refused, with a user error naming the
// address.
func TestServerMutualTLS(t *testing.T) {
	for _, env := range []string{"HERD_TEMPORAL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", envCert, envKey, envCA, envServerName, envAPIKey} {
		t.Setenv(env, "")
	}
	dir := tinyRun(t)
	ca := testpki.New(t, t.TempDir(), "ca")
	srvCert, srvKey := ca.Issue(t, "server", "127.0.0.1", "localhost")
	cliCert, cliKey := ca.Issue(t, "client")
	other := testpki.New(t, t.TempDir(), "other-ca")
	otherCert, otherKey := other.Issue(t, "intruder")

	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	start(t, dir, regexp.MustCompile(`^(listening on loopback only)`), "server", "--port", port, "--state-dir", filepath.Join(dir, "home"),
		"--tls-cert", srvCert, "--tls-key", srvKey, "--tls-ca", ca.File)
	tlsFlags := []string{"--tls-ca", ca.File, "--tls-cert", cliCert, "--tls-key", cliKey}

	stdout, stderr, status := herd(t, dir, append([]string{"ls", "--temporal", addr}, tlsFlags...)...)
	if status != 0 || !strings.HasPrefix(stdout, "RUN") {
		t.Fatalf("herd ls with the client certificate: status %d\nstdout: %s\nstderr: %s", status, stdout, stderr)
	}
	// Without --temporal, through the state dir the server serves.
	stdout, stderr, status = herd(t, dir, append([]string{"ls", "--state-dir", filepath.Join(dir, "home")}, tlsFlags...)...)
	if status != 0 || !strings.HasPrefix(stdout, "RUN") {
		t.Fatalf("herd ls --state-dir with the client certificate: status %d\nstdout: %s\nstderr: %s", status, stdout, stderr)
	}

	for name, flags := range map[string][]string{
		"no client certificate":       {"--tls-ca", ca.File},
		"another CA's certificate":    {"--tls-ca", ca.File, "--tls-cert", otherCert, "--tls-key", otherKey},
		"no TLS":                      nil,
		"a server of another CA than": {"--tls-ca", other.File, "--tls-cert", cliCert, "--tls-key", cliKey},
	} {
		stdout, stderr, status := herd(t, dir, append([]string{"ls", "--temporal", addr}, flags...)...)
		t.Run(name, func(t *testing.T) { wantUserError(t, stdout, stderr, status, "--temporal "+addr, "cannot reach") })
	}

	// The environment of Temporal's CLI says the same as the flags; a flag wins over it.
	t.Setenv("TEMPORAL_ADDRESS", addr)
	t.Setenv(envCA, ca.File)
	t.Setenv(envCert, cliCert)
	t.Setenv(envKey, cliKey)
	if stdout, stderr, status := herd(t, dir, "ls"); status != 0 || !strings.HasPrefix(stdout, "RUN") {
		t.Fatalf("herd ls with $TEMPORAL_ADDRESS and $TEMPORAL_TLS_*: status %d\nstdout: %s\nstderr: %s", status, stdout, stderr)
	}
	stdout, stderr, status = herd(t, dir, "ls", "--tls-cert", otherCert, "--tls-key", otherKey)
	wantUserError(t, stdout, stderr, status, "--temporal "+addr)

	// A run, end to end: a worker and `herd run` on the secured server.
	start(t, dir, nil, "worker", "--temporal", addr)
	stdout, stderr, status = herd(t, dir, "run", "run.yaml", "--temporal", addr, "--json")
	if status != 0 {
		t.Fatalf("herd run over mTLS: status %d\n%s", status, stderr)
	}
	var p workflows.Progress
	if err := json.Unmarshal([]byte(stdout), &p); err != nil || p.State != workflows.StateCompleted || p.Step != 3 {
		t.Fatalf("run over mTLS ended %+v (%v)\n%s", p, err, stdout)
	}
}

// A certificate file that is missing is a user error naming the flag, or the variable,
// that gave it, before anything connects.
func TestTLSFileMissing(t *testing.T) {
	for _, env := range []string{"HERD_TEMPORAL", "TEMPORAL_ADDRESS", envCert, envKey, envCA, envServerName, envAPIKey} {
		t.Setenv(env, "")
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	stdout, stderr, status := herd(t, dir, "ls", "--temporal", "127.0.0.1:1", "--tls-ca", missing)
	wantUserError(t, stdout, stderr, status, "--tls-ca "+missing, "no such file")
	t.Setenv(envCert, missing)
	t.Setenv(envKey, missing)
	stdout, stderr, status = herd(t, dir, "status", "x", "--temporal", "127.0.0.1:1")
	wantUserError(t, stdout, stderr, status, "$"+envCert+" "+missing, "no such file")
	t.Setenv(envKey, "")
	ca := testpki.New(t, dir, "ca")
	stdout, stderr, status = herd(t, dir, "worker", "--temporal", "127.0.0.1:1", "--tls-cert", ca.File)
	wantUserError(t, stdout, stderr, status, "--tls-cert", "$"+envKey, "needs its key")
}

// freeAddr is a loopback address with a port that nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// `herd server` with a certificate but no --tls-ca serves TLS without asking for client
// certificates. An API key implies TLS (a server without it is refused), is sent over it
// (herd's server ignores the key; Temporal Cloud checks it), and never shows in --help;
// --tls-server-name is the name checked on the server's certificate.
func TestServerTLSAPIKey(t *testing.T) {
	for _, env := range []string{"HERD_TEMPORAL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", envCert, envKey, envCA, envServerName, envAPIKey} {
		t.Setenv(env, "")
	}
	dir := t.TempDir()
	ca := testpki.New(t, dir, "ca")
	srvCert, srvKey := ca.Issue(t, "server", "127.0.0.1", "localhost")
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	start(t, dir, regexp.MustCompile(`^(listening on loopback only)`), "server", "--port", port, "--state-dir", filepath.Join(dir, "tls"),
		"--tls-cert", srvCert, "--tls-key", srvKey)
	plain := freeAddr(t)
	_, port, _ = net.SplitHostPort(plain)
	start(t, dir, regexp.MustCompile(`^(listening on loopback only)`), "server", "--port", port, "--state-dir", filepath.Join(dir, "plain"))

	t.Setenv(envAPIKey, "secret-key")
	for _, args := range [][]string{
		{"ls", "--temporal", addr, "--tls-ca", ca.File},
		{"ls", "--temporal", addr, "--tls-ca", ca.File, "--tls-server-name", "localhost"},
	} {
		if stdout, stderr, status := herd(t, dir, args...); status != 0 || !strings.HasPrefix(stdout, "RUN") {
			t.Errorf("herd %s with $%s: status %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), envAPIKey, status, stdout, stderr)
		}
	}
	stdout, stderr, status := herd(t, dir, "ls", "--temporal", addr, "--tls-ca", ca.File, "--tls-server-name", "elsewhere.example")
	wantUserError(t, stdout, stderr, status, "--temporal "+addr, "over TLS", "elsewhere.example")
	stdout, stderr, status = herd(t, dir, "ls", "--temporal", plain)
	wantUserError(t, stdout, stderr, status, "--temporal "+plain, "over TLS")
	if stdout, _, _ := herd(t, dir, "ls", "--help"); strings.Contains(stdout, "secret-key") || !strings.Contains(stdout, "$"+envAPIKey) {
		t.Errorf("herd ls --help shows the API key, or not its variable:\n%s", stdout)
	}
}
