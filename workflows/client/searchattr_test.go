package client

import (
	"context"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/workflows/devserver"
)

// On a cluster that is not herd's own, a namespace without herd's search attributes gets
// them registered; one that has them is left as it is; one where they cannot be
// registered (here: a namespace that does not exist) is a user error that gives the
// `temporal operator search-attribute create` commands; one where HerdStep has another
// type is a user error naming both types.
func TestRegisterSearchAttributes(t *testing.T) {
	srv, err := devserver.Start(devserver.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	c, err := Dial(srv.Addr(), "", Auth{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, ns := range []string{"plain", "typed"} {
		_, err := c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace: ns, WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
	}
	custom := func(ns string) map[string]enumspb.IndexedValueType {
		t.Helper()
		r, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetCustomAttributes()
	}
	if got := custom("plain"); len(got) != 0 {
		t.Fatalf("a new namespace has custom search attributes %v", got)
	}
	for range 2 { // registers them, then finds them
		if err := RegisterSearchAttributes(ctx, c, "plain"); err != nil {
			t.Fatal(err)
		}
	}
	got := custom("plain")
	for name, typ := range devserver.SearchAttributes {
		if got[name] != typ {
			t.Errorf("%s registered as %v, want %v", name, got[name], typ)
		}
	}

	err = RegisterSearchAttributes(ctx, c, "absent")
	if !usererr.Is(err) {
		t.Fatalf("a namespace that does not exist: %v, want a user error", err)
	}
	for _, want := range []string{
		"namespace absent",
		"`temporal operator search-attribute create --namespace absent --name HerdState --type Keyword`",
		"`temporal operator search-attribute create --namespace absent --name HerdStep --type Int`",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not give %q", err, want)
		}
	}

	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: "typed",
		SearchAttributes: map[string]enumspb.IndexedValueType{"HerdStep": enumspb.INDEXED_VALUE_TYPE_KEYWORD}})
	if err != nil {
		t.Fatal(err)
	}
	err = RegisterSearchAttributes(ctx, c, "typed")
	if !usererr.Is(err) || !strings.Contains(err.Error(), "HerdStep is registered as Keyword, but herd sets it as Int") {
		t.Errorf("HerdStep of another type: %v, want a user error naming both types", err)
	}
}
