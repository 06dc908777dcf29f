package main

import (
	"os"

	"github.com/herdml/herd/internal/outdir"
	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/usererr"
)

// destination is where a command writes the results it was told to put in dir (what
// names them for messages): dir itself, checked with outdir.Check, or, when dir is a
// bucket URL, a new temporary folder, with the bucket to upload it to once complete
// (Bucket.PutDir); the caller removes the folder. A bucket herd cannot write to is a user
// error naming it, found before any work is done.
func destination(dir, what string) (string, *storage.Bucket, error) {
	if !storage.IsURL(dir) {
		return dir, nil, outdir.Check(dir, what)
	}
	b, err := storage.Open(dir)
	if err != nil {
		return "", nil, err
	}
	if err := b.Probe(); err != nil {
		return "", nil, usererr.New(dir, "cannot write %s here (%v); name a bucket prefix you can write to, with credentials and endpoint in the AWS environment", what, err)
	}
	tmp, err := os.MkdirTemp("", "herd-results-")
	return tmp, b, err
}
