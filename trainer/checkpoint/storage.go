package checkpoint

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/usererr"
)

// Storage keeps committed checkpoints, each a named set of files. It is deliberately small
// (five methods, like torchtitan's storage writer/reader) so that a folder (Dir) and an
// object store (Objects) both implement it; the format, hashing, verification and retention live above it, in
// Save, Latest, Recover, Load and Retain. Names that start with "." are not checkpoints:
// List leaves them out.
type Storage interface {
	// Commit writes the files of checkpoint name, calling each File's Write in order, and
	// makes them visible all at once: a reader sees the whole checkpoint or none of it.
	// Committing a name that exists replaces it.
	Commit(name string, files []File) error
	// Open reads one file of a committed checkpoint.
	Open(name, file string) (io.ReadCloser, error)
	// List returns the names of the committed checkpoints, in any order.
	List() ([]string, error)
	// Delete removes a committed checkpoint.
	Delete(name string) error
	// Rename gives committed checkpoint name the name to, failing with an error that
	// wraps fs.ErrExist if to exists.
	Rename(name, to string) error
}

// File is one file of a checkpoint, produced by streaming into w.
type File struct {
	Name  string
	Write func(w io.Writer) error
}

// Dir stores checkpoints as subdirectories of Root, one per checkpoint. A checkpoint is
// written into Root/.tmp-<name>, every file and the directory are fsynced, and the
// directory is renamed to Root/<name>, so a crash leaves either the old state or the new
// one, never a half-written checkpoint under a real name.
type Dir struct{ Root string }

// OpenRoot returns the storage of a run's checkpoint folder, root: a local folder (Dir)
// or an object-store URL, s3://bucket/prefix (Objects).
func OpenRoot(root string) (Storage, error) {
	if !storage.IsURL(root) {
		return Dir{Root: root}, nil
	}
	b, err := storage.Open(root)
	if err != nil {
		return nil, err
	}
	return Objects{B: b}, nil
}

// At splits the path or URL of one checkpoint into the storage that holds it and its name.
func At(p string) (Storage, string, error) {
	if !storage.IsURL(p) {
		p = filepath.Clean(p)
		return Dir{Root: filepath.Dir(p)}, filepath.Base(p), nil
	}
	p = strings.TrimRight(p, "/")
	i := strings.LastIndex(p, "/")
	if i < len(storage.Scheme) {
		return nil, "", usererr.New(p, "name a checkpoint under a bucket: s3://bucket/prefix/step-00000300")
	}
	s, err := OpenRoot(p[:i])
	return s, p[i+1:], err
}

// Find resolves what a user names as a checkpoint: a checkpoint folder itself, or a run's
// folder holding checkpoints, which means its newest one that verifies (with a warning for
// each newer one skipped); either may be a local path or an object-store URL. A folder
// that is neither is a user error naming it. A path named like a checkpoint
// (step-NNNNNNNN) is always taken as one, so that a damaged checkpoint is reported as such
// rather than searched for others.
func Find(p string) (Storage, string, []string, error) {
	s, name, err := At(p)
	if err != nil {
		return nil, "", nil, err
	}
	_, named := parseName(name)
	if named || hasManifest(s, name) {
		return s, name, nil, nil
	}
	run, err := OpenRoot(strings.TrimRight(p, "/"))
	if err != nil {
		return nil, "", nil, err
	}
	name, warnings, err := Latest(run)
	switch {
	case errors.Is(err, ErrNone) || errors.Is(err, fs.ErrNotExist):
		return nil, "", warnings, usererr.New(p, "no valid checkpoint: name a checkpoint folder (such as runs/tiny/step-00000300) or a run folder holding one")
	case err != nil:
		return nil, "", warnings, err
	}
	return run, name, warnings, nil
}

func hasManifest(s Storage, name string) bool {
	r, err := s.Open(name, ManifestFile)
	if err == nil {
		r.Close()
	}
	return err == nil
}

// String is the root folder, for messages.
func (d Dir) String() string { return d.Root }

const tmpPrefix = ".tmp-"

// Commit: see Storage.
func (d Dir) Commit(name string, files []File) error {
	if err := os.MkdirAll(d.Root, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(d.Root, tmpPrefix+name)
	if err := os.RemoveAll(tmp); err != nil { // left by a crash during an earlier attempt
		return err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(tmp, f.Name), f.Write); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("checkpoint %s: %s: %w", name, f.Name, err)
		}
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	final := filepath.Join(d.Root, name)
	if _, err := os.Stat(final); err == nil {
		// rename(2) will not replace a non-empty directory: move the old one aside first.
		old := filepath.Join(d.Root, tmpPrefix+"old-"+name)
		if err := os.RemoveAll(old); err != nil {
			return err
		}
		if err := os.Rename(final, old); err != nil {
			return err
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return syncDir(d.Root)
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Open: see Storage.
func (d Dir) Open(name, file string) (io.ReadCloser, error) {
	return os.Open(filepath.Join(d.Root, name, file))
}

// List: see Storage. Temporary and hidden directories are not checkpoints.
func (d Dir) List() ([]string, error) {
	entries, err := os.ReadDir(d.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Delete: see Storage.
func (d Dir) Delete(name string) error { return os.RemoveAll(filepath.Join(d.Root, name)) }

// Rename: see Storage.
func (d Dir) Rename(name, to string) error {
	dst := filepath.Join(d.Root, to)
	if _, err := os.Lstat(dst); err == nil {
		return &fs.PathError{Op: "rename", Path: dst, Err: fs.ErrExist}
	}
	if err := os.Rename(filepath.Join(d.Root, name), dst); err != nil {
		return err
	}
	return syncDir(d.Root)
}
