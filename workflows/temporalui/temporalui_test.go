package temporalui

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/herdml/herd/internal/testpki"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/workflows/devserver"
)

// The Temporal Web UI started by the embedded server (Hook) serves its page, and its API
// reaches the frontend: a workflow started by a client is listed through the UI server,
// over plain gRPC and over the mutual TLS of a server that requires client certificates
// (the UI presents the system worker's).
func TestUI(t *testing.T) {
	for _, mtls := range []bool{false, true} {
		name := "plain"
		if mtls {
			name = "mtls"
		}
		t.Run(name, func(t *testing.T) {
			opts := devserver.Options{StateDir: t.TempDir(), UI: Hook("127.0.0.1:0", false, false)}
			copts := client.Options{Namespace: "default", Logger: log.NewStructuredLogger(slog.New(slog.DiscardHandler))}
			if mtls {
				ca := testpki.New(t, t.TempDir(), "ca")
				cert, key := ca.Issue(t, "server", "127.0.0.1")
				opts.TLS = devserver.TLS{CertFile: cert, KeyFile: key, ClientCAFile: ca.File}
				copts.ConnectionOptions.TLS = clientTLS(t, ca, cert, key)
			}
			s, err := devserver.Start(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			url := s.UIURL()
			if !strings.HasPrefix(url, "http://127.0.0.1:") || strings.HasSuffix(url, ":0") {
				t.Fatalf("UIURL = %q, want http://127.0.0.1:PORT", url)
			}

			page := get(t, url+"/")
			if !strings.Contains(page, "<html") || !strings.Contains(page, "/_app/") {
				t.Fatalf("GET / is not the UI's page:\n%.300s", page)
			}

			copts.HostPort = s.Addr()
			c, err := client.Dial(copts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// No worker polls the queue: the workflow stays running, which is all the
			// listing needs.
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "ui-probe", TaskQueue: "nobody"}, "Probe")
			if err != nil {
				t.Fatal(err)
			}
			// Visibility records are written after the start returns: ask until listed.
			for {
				var list struct {
					Executions []struct {
						Execution struct{ WorkflowID, RunID string }
						Type      struct{ Name string }
					}
				}
				body := get(t, url+"/api/v1/namespaces/default/workflows")
				if err := json.Unmarshal([]byte(body), &list); err != nil {
					t.Fatalf("workflows through the UI: %v:\n%.300s", err, body)
				}
				if len(list.Executions) == 1 {
					e := list.Executions[0]
					if e.Execution.WorkflowID != "ui-probe" || e.Execution.RunID != run.GetRunID() || e.Type.Name != "Probe" {
						t.Fatalf("the UI lists %+v, want ui-probe run %s of type Probe", e, run.GetRunID())
					}
					return
				}
				if len(list.Executions) > 1 || ctx.Err() != nil {
					t.Fatalf("the UI lists %d workflows, want the one started (%v):\n%.300s", len(list.Executions), ctx.Err(), body)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// A UI address is refused with a user error naming it when it is not IP:PORT, beyond
// loopback without insecure, or in use; a default address in use (anyPort) moves to a
// free port instead. A port taken between that check and the server's start is refused
// by the hook, which releases the state dir.
func TestUIRefusals(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().String()
	for _, c := range []struct{ ui, want string }{
		{"localhost:8233", "not IP:PORT"},
		{"127.0.0.1", "not IP:PORT"},
		{"127.0.0.1:99999", "not IP:PORT"},
		{"0.0.0.0:8233", "no authentication"},
		{"[::]:8233", "no authentication"},
		{taken, "in use"},
	} {
		_, err := Check(c.ui, false, false)
		if !usererr.Is(err) || !strings.Contains(err.Error(), "--temporal-ui "+c.ui) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("UI %s: %v, want a user error naming --temporal-ui %s: %s", c.ui, err, c.ui, c.want)
		}
	}

	got, err := Check(taken, false, true)
	if err != nil || got == taken || !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("anyPort with %s taken: %q, %v; want another port on 127.0.0.1", taken, got, err)
	}
	if got, err := Check("0.0.0.0:0", true, false); err != nil || strings.HasSuffix(got, ":0") {
		t.Errorf("0.0.0.0:0 with insecure: %q, %v; want a free port", got, err)
	}

	dir := t.TempDir()
	_, err = devserver.Start(devserver.Options{StateDir: dir, UI: Hook(taken, false, false)})
	if !usererr.Is(err) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("the server with its UI's port taken: %v, want a user error: in use", err)
	}
	// The refusal stopped the server and released the state dir: another starts on it.
	s, err := devserver.Start(devserver.Options{StateDir: dir})
	if err != nil {
		t.Fatalf("the server after its UI's refusal: %v", err)
	}
	s.Stop()
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s:\n%.300s", url, resp.Status, b)
	}
	return string(b)
}

// clientTLS is a client's mutual TLS to a frontend whose certificate ca signed.
func clientTLS(t *testing.T, ca *testpki.CA, cert, key string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"}
}
