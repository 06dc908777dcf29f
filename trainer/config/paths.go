package config

import (
	"path/filepath"
	"strings"
)

// ResolvePaths makes the run's relative paths (data.train, data.eval, init.from,
// train.checkpoint.dir) absolute, joined to dir, so that a worker started in any folder
// finds them. Absolute paths, paths that start with an environment variable ($GOROOT/...,
// expanded where they are read) and URLs (s3://...) stay as they are. It reads nothing:
// the same run and dir always give the same result.
func (r *Run) ResolvePaths(dir string) {
	for _, p := range []*string{&r.Data.Train, &r.Data.Eval, &r.Init.From, &r.Train.Checkpoint.Dir} {
		if *p == "" || filepath.IsAbs(*p) || strings.HasPrefix(*p, "$") || strings.Contains(*p, "://") {
			continue
		}
		*p = filepath.Join(dir, *p)
	}
}
