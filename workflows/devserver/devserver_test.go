package devserver

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/herdml/herd/internal/usererr"
)

func dial(t testing.TB, s *Server) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: s.Addr(), Namespace: s.Namespace(), Logger: quiet{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// One server start is a few seconds of CPU, so the test walks one state dir through its
// whole life: first start, a second process refused, restart, version mismatch.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	if err != nil {
		t.Fatalf("default namespace not registered: %v", err)
	}
	if got := ns.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration(); got != 30*24*time.Hour {
		t.Errorf("retention = %v, want 720h", got)
	}
	sa, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for name := range SearchAttributes {
		if _, ok := sa.GetCustomAttributes()[name]; !ok {
			t.Errorf("search attribute %s not registered", name)
		}
	}

	// A second server on the same state dir is refused and told where the first one is.
	_, err = Start(Options{StateDir: dir})
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Addr != s.Addr() {
		t.Fatalf("second Start = %v, want BusyError at %s", err, s.Addr())
	}
	if got := RunningAddr(dir); got != s.Addr() {
		t.Errorf("RunningAddr = %q, want %q", got, s.Addr())
	}
	s.Stop()
	if got := RunningAddr(dir); got != "" {
		t.Errorf("RunningAddr after Stop = %q, want none", got)
	}

	// Restart on the same file: the stamp matches and the namespace is still there.
	s, err = Start(Options{StateDir: dir})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	c = dial(t, s)
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	s.Stop()

	// A file stamped by another server version is refused with a user error naming both.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE herd_stamp SET server_version = '1.29.0'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Start(Options{StateDir: dir})
	if !usererr.Is(err) || !strings.Contains(err.Error(), "1.29.0") || !strings.Contains(err.Error(), ServerVersion) {
		t.Fatalf("mismatched stamp: err = %v, want a user error naming 1.29.0 and %s", err, ServerVersion)
	}
	// The refusal released the state dir.
	if got := RunningAddr(dir); got != "" {
		t.Errorf("RunningAddr after refusal = %q", got)
	}
}

// quiet drops the SDK's log lines.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
