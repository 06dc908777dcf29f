package data

import (
	"path/filepath"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// serve packs the test Go sources as dataset "go" and serves them on loopback.
func serve(t testing.TB, o ServeOptions) string {
	t.Helper()
	dir := t.TempDir()
	packGo(t, filepath.Join(dir, "go"))
	srv := NewFlightServer(dir)
	o.Addr = "127.0.0.1:0"
	gs, lis, err := srv.Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(func() { gs.Stop(); srv.Close() })
	return "grpc://" + lis.Addr().String()
}

func TestFlightServesTheSameBatches(t *testing.T) {
	addr := serve(t, ServeOptions{})
	remote, err := Open(addr+"/go", testT, 8, 2, 1, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	c, err := ReadCorpus(goSrc)
	if err != nil {
		t.Fatal(err)
	}
	local, err := NewTextStream(c, testT, 8, 2, 1, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	var a, b Batch
	for i := range 60 { // more batches than the client caches
		if err := local.Next(&a); err != nil {
			t.Fatal(err)
		}
		if err := remote.Next(&b); err != nil {
			t.Fatal(err)
		}
		if !sameBatch(&a, &b) {
			t.Fatalf("batch %d over Flight differs from the local one", i)
		}
	}
	if _, err := Open(addr+"/nope", testT, 8, 2, 0, 1, 5); !usererr.Is(err) {
		t.Fatalf("unknown dataset: error %v, want a user error", err)
	}
	if _, err := Open(addr+"/../go", testT, 8, 2, 0, 1, 5); !usererr.Is(err) {
		t.Fatalf("dataset outside the served folder: error %v, want a user error", err)
	}
}

func TestFlightSecurity(t *testing.T) {
	srv := NewFlightServer(t.TempDir())
	if _, _, err := srv.Listen(ServeOptions{Addr: "0.0.0.0:0"}); !usererr.Is(err) {
		t.Fatalf("listening on all interfaces without TLS and token: error %v, want a user error", err)
	}
	if _, err := OpenRemote("grpc://192.0.2.1:8815/go"); !usererr.Is(err) {
		t.Fatalf("plain-text client to a remote host: error %v, want a user error", err)
	}
	addr := serve(t, ServeOptions{Token: "s3cret"})
	t.Setenv("HERD_DATA_TOKEN", "wrong")
	if _, err := OpenRemote(addr + "/go"); !usererr.Is(err) {
		t.Fatalf("wrong token: error %v, want a user error", err)
	}
	t.Setenv("HERD_DATA_TOKEN", "s3cret")
	sh, err := OpenRemote(addr + "/go")
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	if err := sh.Verify(nil); err != nil {
		t.Fatal(err)
	}
}
