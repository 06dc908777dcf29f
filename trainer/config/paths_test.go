package config

import "testing"

// Relative paths join the folder; absolute ones, those led by an environment variable
// and URLs stay; an empty one stays empty.
func TestResolvePaths(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"shards/go", "/home/u/shards/go"},
		{"../runs", "/home/runs"},
		{"/data/go", "/data/go"},
		{"$GOROOT/src/*.go", "$GOROOT/src/*.go"},
		{"${HOME}/x", "${HOME}/x"},
		{"s3://bucket/runs", "s3://bucket/runs"},
		{"", ""},
	} {
		r := Run{Data: Data{Train: c.in, Eval: c.in}}
		r.Train.Checkpoint.Dir = c.in
		r.ResolvePaths("/home/u")
		if r.Data.Train != c.want || r.Data.Eval != c.want || r.Train.Checkpoint.Dir != c.want {
			t.Errorf("%q: train %q eval %q checkpoint dir %q, want %q", c.in, r.Data.Train, r.Data.Eval, r.Train.Checkpoint.Dir, c.want)
		}
	}
}
