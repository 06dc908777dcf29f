package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/herdml/herd/internal/storage"
)

// Objects stores checkpoints in an object store, one key prefix per checkpoint:
// <prefix>/<name>/<file>. An object store has no rename, so the manifest is the commit:
// Commit uploads every other file first and manifest.json last, and List returns only the
// names whose manifest exists. A save killed half-way leaves objects without a manifest,
// which no reader sees (Latest and Recover never look at them) and the next save of that
// step overwrites.
type Objects struct{ B *storage.Bucket }

// String is the URL of the run's prefix, for messages.
func (o Objects) String() string { return o.B.String() }

// Commit: see Storage. files must end with manifest.json, the commit marker. Each file is
// built in memory and uploaded whole (a checkpoint's files are host copies already, so
// this doubles at most the largest one). Replacing a committed checkpoint deletes its
// manifest first, so that readers see it absent, never half old and half new.
func (o Objects) Commit(name string, files []File) error {
	if len(files) == 0 || files[len(files)-1].Name != ManifestFile {
		return fmt.Errorf("checkpoint %s: the last file committed to an object store must be %s", name, ManifestFile)
	}
	if err := o.B.Delete(path.Join(name, ManifestFile)); err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, f := range files {
		buf.Reset()
		if err := f.Write(&buf); err != nil {
			return fmt.Errorf("checkpoint %s: %s: %w", name, f.Name, err)
		}
		if err := o.B.Put(path.Join(name, f.Name), buf.Bytes()); err != nil {
			return fmt.Errorf("checkpoint %s: %w", name, err)
		}
	}
	return nil
}

// Open: see Storage.
func (o Objects) Open(name, file string) (io.ReadCloser, error) {
	return o.B.Get(path.Join(name, file))
}

// List: see Storage. Only names with a manifest are committed checkpoints.
func (o Objects) List() ([]string, error) {
	keys, err := o.B.List("")
	if err != nil {
		if isNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var names []string
	for _, k := range keys {
		name, file, ok := strings.Cut(k, "/")
		if ok && file == ManifestFile && !strings.HasPrefix(name, ".") {
			names = append(names, name)
		}
	}
	return names, nil
}

// Delete: see Storage. The manifest goes first, so that a delete cut short leaves an
// uncommitted remainder rather than a checkpoint missing files.
func (o Objects) Delete(name string) error {
	keys, err := o.files(name)
	if err != nil {
		return err
	}
	return o.B.Delete(keys...)
}

// Rename: see Storage. It copies every object to the new name, the manifest last, then
// deletes the old ones, the manifest first.
func (o Objects) Rename(name, to string) error {
	if ok, err := o.B.Exists(path.Join(to, ManifestFile)); err != nil || ok {
		if err == nil {
			err = &fs.PathError{Op: "rename", Path: storage.Join(o.B.String(), to), Err: fs.ErrExist}
		}
		return err
	}
	keys, err := o.files(name)
	if err != nil {
		return err
	}
	for i := len(keys) - 1; i >= 0; i-- { // files() puts the manifest first
		if err := o.B.Copy(keys[i], to+strings.TrimPrefix(keys[i], name)); err != nil {
			return err
		}
	}
	return o.B.Delete(keys...)
}

// files lists the objects of checkpoint name, its manifest first if it has one.
func (o Objects) files(name string) ([]string, error) {
	keys, err := o.B.List(name)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, k := range keys {
		if k == path.Join(name, ManifestFile) {
			out = append([]string{k}, out...)
		} else {
			out = append(out, k)
		}
	}
	return out, nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
