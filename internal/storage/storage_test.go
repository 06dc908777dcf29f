package storage

import (
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// Join keeps the scheme of a URL and joins local paths as path.Join does.
func TestJoin(t *testing.T) {
	for _, c := range [][3]string{
		{"s3://b", "run", "s3://b/run"}, {"s3://b/p/", "run", "s3://b/p/run"}, {"runs", "run", "runs/run"}, {"/a/", "b", "/a/b"},
	} {
		if got := Join(c[0], c[1]); got != c[2] {
			t.Errorf("Join(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

// A URL without a bucket, or with credentials in it, is a user error; the message never
// repeats the secret.
func TestOpenRefuses(t *testing.T) {
	for _, url := range []string{"s3://", "s3:///prefix", "s3://AKIAX:s3cr3t@bucket/runs", "s3://s3cr3t@bucket"} {
		_, err := Open(url)
		if !usererr.Is(err) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("Open(%q) = %v; want a user error without the secret", url, err)
		}
	}
}
