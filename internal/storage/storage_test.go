package storage

import "testing"

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
