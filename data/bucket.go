package data

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/usererr"
)

// CacheEnv moves the local cache of shards read from a bucket (default: herd/shards under
// the user cache folder, ~/.cache on Linux).
const CacheEnv = "HERD_SHARD_CACHE"

// fetch makes a local copy of the shard set at url (s3://bucket/prefix, a folder holding
// manifest.json, or the manifest's own URL) and returns the path of its manifest. Shards
// are memory-mapped, so they are read from local files: the copy lives in the cache,
// under <cache>/<bucket>/<prefix>/, and is checked on every open against the manifest
// fetched from the bucket; a cached shard whose size or sha256 differs (corrupt, or
// replaced in the bucket) is fetched again. A fetched shard that does not match the
// manifest is a user error naming its URL. Copies are written under a temporary name and
// renamed, so that processes sharing a cache never see half a shard.
func fetch(url string) (string, error) {
	dir := strings.TrimSuffix(strings.TrimRight(url, "/"), "/"+ManifestName)
	b, err := storage.Open(dir)
	if err != nil {
		return "", err
	}
	r, err := b.Get(ManifestName)
	if err != nil {
		return "", usererr.New(storage.Join(dir, ManifestName), "cannot read the dataset manifest: %v", err)
	}
	body, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return "", usererr.New(storage.Join(dir, ManifestName), "cannot read the dataset manifest: %v", err)
	}
	m, err := ParseManifest(storage.Join(dir, ManifestName), body)
	if err != nil {
		return "", err
	}
	root, err := cacheDir()
	if err != nil {
		return "", err
	}
	local := filepath.Join(root, filepath.FromSlash(path.Clean(strings.TrimPrefix(dir, storage.Scheme))))
	if err := os.MkdirAll(local, 0o755); err != nil {
		return "", usererr.New(local, "cannot make the shard cache folder (%v); set %s to a folder you can write to", err, CacheEnv)
	}
	for _, sh := range m.Shards {
		p := filepath.Join(local, filepath.FromSlash(sh.Path))
		if matches(p, sh) == nil {
			continue
		}
		if err := download(b, sh, p); err != nil {
			return "", err
		}
	}
	manifest := filepath.Join(local, ManifestName)
	return manifest, atomicWrite(manifest, func(w io.Writer) error { _, err := w.Write(body); return err })
}

// cacheDir is the root of the shard cache.
func cacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", usererr.New(CacheEnv, "no user cache folder (%v): set %s to a folder for shards read from a bucket", err, CacheEnv)
	}
	return filepath.Join(d, "herd", "shards"), nil
}

// matches checks the file at p against sh's size and sha256.
func matches(p string, sh ShardInfo) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	switch {
	case err != nil:
		return err
	case n != sh.Bytes:
		return fmt.Errorf("%d bytes, the manifest says %d", n, sh.Bytes)
	case hex.EncodeToString(h.Sum(nil)) != sh.SHA256:
		return fmt.Errorf("sha256 %x, the manifest says %s", h.Sum(nil), sh.SHA256)
	}
	return nil
}

// download fetches shard sh from b to p, checked against the manifest before it is
// renamed into place.
func download(b *storage.Bucket, sh ShardInfo, p string) error {
	src := storage.Join(b.String(), sh.Path)
	r, err := b.Get(sh.Path)
	if err != nil {
		return usererr.New(src, "shard listed in the manifest cannot be read: %v", err)
	}
	defer r.Close()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	err = atomicWrite(p, func(w io.Writer) error {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), r)
		switch {
		case err != nil:
			return fmt.Errorf("fetching %s: %w", src, err)
		case n != sh.Bytes:
			return usererr.New(src, "is %d bytes but the manifest says %d: the shard is truncated or was replaced; pack and upload the dataset again", n, sh.Bytes)
		case hex.EncodeToString(h.Sum(nil)) != sh.SHA256:
			return usererr.New(src, "sha256 %x, the manifest says %s: the shard is corrupt or was replaced; pack and upload the dataset again", h.Sum(nil), sh.SHA256)
		}
		return nil
	})
	return err
}

// atomicWrite writes p through a temporary file in its folder, renamed when write
// succeeds.
func atomicWrite(p string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(p), ".fetch-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}
