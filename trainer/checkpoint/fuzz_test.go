package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

// memStore is a Storage in memory, so that a fuzz target runs without touching the disk.
type memStore map[string]map[string][]byte

func (m memStore) Commit(name string, files []File) error {
	c := map[string][]byte{}
	for _, f := range files {
		var b bytes.Buffer
		if err := f.Write(&b); err != nil {
			return err
		}
		c[f.Name] = b.Bytes()
	}
	m[name] = c
	return nil
}

func (m memStore) Open(name, file string) (io.ReadCloser, error) {
	b, ok := m[name][file]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m memStore) List() ([]string, error) { return nil, nil }

func (m memStore) Delete(name string) error { delete(m, name); return nil }

func (m memStore) Rename(name, to string) error {
	m[to] = m[name]
	delete(m, name)
	return nil
}

// saved is a checkpoint written by Save into memory, and its name.
func saved(t testing.TB) (memStore, string) {
	m := memStore{}
	name, err := Save(m, snapshot(7, 1))
	if err != nil {
		t.Fatal(err)
	}
	return m, name
}

// with returns a copy of checkpoint name of m whose file is b and whose manifest, when
// rehash is set, records b's true size and sha256, so that the bytes reach the parser.
func with(m memStore, name, file string, b []byte, rehash bool) memStore {
	c := maps.Clone(m[name])
	c[file] = b
	if rehash {
		var man Manifest
		json.Unmarshal(c[ManifestFile], &man)
		for i, f := range man.Files {
			if f.Name == file {
				sum := sha256.Sum256(b)
				man.Files[i].Size, man.Files[i].SHA256 = int64(len(b)), hex.EncodeToString(sum[:])
			}
		}
		c[ManifestFile], _ = json.Marshal(man)
	}
	return memStore{name: c}
}

// load runs the whole reading path a user's checkpoint takes, Load after Verify, and
// checks that it either succeeds or fails with a user error.
func load(t *testing.T, m memStore, name string) {
	snap := dest(snapshot(7, 1))
	if err := Load(m, name, &snap, nil); err != nil && !usererr.Is(err) {
		t.Fatalf("not a user error: %v", err)
	}
}

// FuzzManifest feeds manifest.json: whatever it holds, reading the checkpoint never
// panics and fails only with a user error.
func FuzzManifest(f *testing.F) {
	m, name := saved(f)
	f.Add(m[name][ManifestFile])
	f.Add([]byte(`{"format": 1, "files": [{"name": "../../../etc/hostname", "size": 1, "sha256": ""}]}`))
	f.Add([]byte(`{"format": 2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		load(t, with(m, name, ManifestFile, b, false), name)
	})
}

// FuzzState feeds state.json, with a manifest that agrees with it.
func FuzzState(f *testing.F) {
	m, name := saved(f)
	f.Add(m[name][StateFile])
	f.Add([]byte(`{"format": 1, "step": -1, "data": null, "rng": "!"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		load(t, with(m, name, StateFile, b, true), name)
	})
}

// FuzzSafetensors feeds model.safetensors, with a manifest that agrees with it, so that
// the header and data reach ReadSafetensors.
func FuzzSafetensors(f *testing.F) {
	m, name := saved(f)
	model := m[name][ModelFile]
	f.Add(model)
	f.Add(model[:len(model)-3])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		load(t, with(m, name, ModelFile, b, true), name)
	})
}

// A manifest names the files Verify opens: a name other than the three checkpoint files
// (here one leading out of the checkpoint's folder, whose size and sha256 it gives
// correctly) is refused, never opened.
func TestManifestListsOnlyCheckpointFiles(t *testing.T) {
	st := Dir{Root: t.TempDir()}
	name, err := Save(st, snapshot(7, 1))
	if err != nil {
		t.Fatal(err)
	}
	outside := []byte("not part of any checkpoint\n")
	if err := os.WriteFile(filepath.Join(st.Root, "outside.txt"), outside, 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(st.Root, name, ManifestFile)
	var m Manifest
	b, _ := os.ReadFile(p)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(outside)
	m.Files = append(m.Files, FileInfo{Name: "../outside.txt", Size: int64(len(outside)), SHA256: hex.EncodeToString(sum[:])})
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Verify(st, name); !usererr.Is(err) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), `"../outside.txt"`) {
		t.Fatalf("Verify of a manifest listing ../outside.txt: %v; want a user error naming the manifest and the file", err)
	}
}
