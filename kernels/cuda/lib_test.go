package cuda

import (
	"errors"
	"strings"
	"testing"
)

// A library that exists nowhere is ErrNoLibrary, naming the file and where Load looked,
// including $HERD_CUDA_LIBS.
func TestLoadMissing(t *testing.T) {
	t.Setenv(LibsEnv, "/nonexistent/herd-cuda")
	_, err := Load("libherd-no-such-library.so.1")
	if !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("Load = %v, want ErrNoLibrary", err)
	}
	for _, want := range []string{"libherd-no-such-library.so.1", "/nonexistent/herd-cuda", LibsEnv} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// The C library is always there: Load finds it through the system loader and Bind
// resolves a symbol that calls correctly, and refuses one that does not exist.
func TestLoadAndBind(t *testing.T) {
	lib, err := Load("libc.so.6")
	if err != nil {
		t.Fatal(err)
	}
	var strlen func(s string) uintptr
	if err := lib.Bind(&strlen, "strlen"); err != nil {
		t.Fatal(err)
	}
	if n := strlen("herd"); n != 4 {
		t.Errorf("strlen(herd) = %d", n)
	}
	var none func()
	if err := lib.Bind(&none, "herd_no_such_symbol"); err == nil || !strings.Contains(err.Error(), "herd_no_such_symbol") {
		t.Errorf("Bind of a missing symbol = %v", err)
	}
}
