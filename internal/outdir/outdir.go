// Package outdir checks and makes the folders herd writes a user's results to (datasets,
// exports, checkpoints, sweep results), so that a destination herd cannot write is one
// user error naming it, found before any work is done rather than after it.
package outdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/usererr"
)

// Check returns a user error naming dir when herd cannot make dir a folder and write in
// it: a file in its place or in a parent's, a folder it may not write to, a file system
// that refuses (a read-only mount, /proc). what names the destination for the message,
// such as "the dataset (--out)". Check probes by making and removing a temporary folder
// in dir, or in its nearest existing parent, because permission bits neither stop root
// nor show a read-only mount. It leaves nothing behind.
func Check(dir, what string) error {
	if dir == "" {
		return usererr.New(what, "no folder given; name a folder to write to")
	}
	if storage.IsURL(dir) {
		// Checkpoints, exports and sweep results reach buckets their own ways (checkpoint
		// storage, an upload of a finished folder); what checks a folder here cannot.
		return usererr.New(dir, "%s cannot be written to an object store yet; name a local folder", what)
	}
	existing, err := nearest(dir)
	if err != nil {
		return usererr.New(dir, "cannot write %s here (%v); name a folder you can write to", what, err)
	}
	return probe(dir, existing, what, "folder")
}

// CheckFile is Check for a file that herd creates or replaces at path, in a folder that
// must exist already: a user error naming path when that folder is missing or herd cannot
// write in it, or when path is a folder.
func CheckFile(path, what string) error {
	if path == "" {
		return usererr.New(what, "no file given; name a file to write to")
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return usererr.New(path, "cannot write %s here: it is a folder; name a file", what)
	}
	parent := filepath.Dir(path)
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		return usererr.New(path, "cannot write %s here: %s is not a folder; name a file in an existing folder", what, parent)
	}
	return probe(path, parent, what, "file")
}

// probe makes and removes a temporary folder in the existing folder dir, the test that
// tells whether herd may write there; the user error names path, which dir holds.
func probe(path, dir, what, kind string) error {
	p, err := os.MkdirTemp(dir, ".herd-probe-*")
	if err != nil {
		return usererr.New(path, "cannot write %s here (making a folder in %s: %v); name a %s you can write to", what, dir, cause(err), kind)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("removing the write probe: %w", err)
	}
	return nil
}

// nearest returns dir if it is a folder, else its nearest existing parent folder. A file
// where a folder must be is an error naming that file.
func nearest(dir string) (string, error) {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		switch {
		case err == nil && fi.IsDir():
			return p, nil
		case err == nil:
			return "", fmt.Errorf("%s is a file, not a folder", p)
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return "", cause(err)
		case p == filepath.Dir(p):
			return "", cause(err)
		}
	}
}

// Make creates dir and any missing parents, as os.MkdirAll does, and returns the topmost
// folder it created ("" when dir existed), so that a failed writer can remove exactly
// what it made and never a folder that was there before.
func Make(dir string) (created string, err error) {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil || p == filepath.Dir(p) {
			break
		}
		created = p
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return "", err
	}
	return created, nil
}

// cause is the system's reason in err, without the operation and path that the message
// already names.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
