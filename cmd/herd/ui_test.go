package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/testpki"
)

// An explicit --ui that cannot listen is a user error naming it, before anything starts:
// `herd server` writes no state.
func TestUIAddressTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	state := filepath.Join(t.TempDir(), "home")
	stdout, stderr, status := herd(t, t.TempDir(), "server", "--state-dir", state, "--port", "0", "--ui", l.Addr().String())
	wantUserError(t, stdout, stderr, status, "--ui "+l.Addr().String(), "address already in use")
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("herd server wrote its state dir: %v", err)
	}
	stdout, stderr, status = herd(t, t.TempDir(), "ui", "--temporal", "127.0.0.1:1", "--ui", "no-such-host.invalid:80")
	wantUserError(t, stdout, stderr, status, "--ui no-such-host.invalid:80")
}

// `herd ui` serves the dashboard of any Temporal server: on loopback without a token; on
// another address with a generated token, printed in its URL, that every API request
// needs.
func TestUICommand(t *testing.T) {
	t.Setenv(envUIToken, "")
	dir := t.TempDir()
	temporal := start(t, dir, regexp.MustCompile(`^Temporal server \S+ at (\S+),`), "server", "--port", "0", "--state-dir", filepath.Join(dir, "home"), "--ui", "off")
	dash := regexp.MustCompile(`^dashboard at (http://\S+)$`)

	url := start(t, dir, dash, "ui", "--temporal", temporal, "--ui", "127.0.0.1:0", "--temporal-ui-url", "http://127.0.0.1:8233")
	var runs struct {
		Runs       []any  `json:"runs"`
		TemporalUI string `json:"temporal_ui"`
	}
	code, body := uiGet(t, url+"api/runs", "")
	if err := json.Unmarshal([]byte(body), &runs); code != 200 || err != nil || runs.Runs == nil || runs.TemporalUI != "http://127.0.0.1:8233" {
		t.Fatalf("GET %sapi/runs: %d %s", url, code, body)
	}

	// The default address taken (here by this test, if no other herd has it): a free
	// loopback port instead, printed.
	if l, err := net.Listen("tcp", defaultUIAddr); err == nil {
		defer l.Close()
	}
	url = start(t, dir, dash, "ui", "--temporal", temporal)
	if !strings.HasPrefix(url, "http://127.0.0.1:") || strings.Contains(url, defaultUIAddr) {
		t.Errorf("with %s taken: %s", defaultUIAddr, url)
	}
	if code, body := uiGet(t, url+"api/runs", ""); code != 200 {
		t.Errorf("GET %sapi/runs: %d %s", url, code, body)
	}

	url = start(t, dir, dash, "ui", "--temporal", temporal, "--ui", "0.0.0.0:0")
	base, token, ok := strings.Cut(url, "/?token=")
	if !ok || len(token) < 32 {
		t.Fatalf("off loopback, the URL %q has no generated token", url)
	}
	base = strings.Replace(base, "0.0.0.0", "127.0.0.1", 1)
	if code, body := uiGet(t, base+"/api/runs", ""); code != 401 {
		t.Errorf("without the token: %d %s, want 401", code, body)
	}
	if code, body := uiGet(t, base+"/api/runs", token); code != 200 {
		t.Errorf("with the token: %d %s, want 200", code, body)
	}
}

// `herd server` with mutual TLS serves its dashboard too: it dials its own frontend as the
// server's system worker does, with the server's certificate.
func TestServerDashboardMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t, t.TempDir(), "ca")
	srvCert, srvKey := ca.Issue(t, "server", "127.0.0.1", "localhost")
	url := start(t, dir, regexp.MustCompile(`^dashboard at (http://\S+)$`), "server", "--port", "0", "--state-dir", filepath.Join(dir, "home"),
		"--tls-cert", srvCert, "--tls-key", srvKey, "--tls-ca", ca.File, "--ui", "127.0.0.1:0")
	if code, body := uiGet(t, url+"api/runs", ""); code != 200 || !strings.Contains(body, `"runs":[]`) {
		t.Errorf("GET %sapi/runs: %d %s", url, code, body)
	}
}

// uiGet sends GET u, with the bearer token if given, and returns the status and body.
func uiGet(t *testing.T, u, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
