package usererr

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestIsSeesThroughWrapping(t *testing.T) {
	err := fmt.Errorf("loading run: %w", New("run.yaml: model.d_model", "must be positive, got -3"))
	if !Is(err) {
		t.Fatalf("Is(%v) = false, want true", err)
	}
	if got, want := err.Error(), "loading run: run.yaml: model.d_model: must be positive, got -3"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	if Is(fmt.Errorf("read: %w", io.ErrUnexpectedEOF)) || Is(errors.New("x")) {
		t.Fatal("internal errors reported as user errors")
	}
}
