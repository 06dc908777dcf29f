package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/s3test"
	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/usererr"
)

// A shard set in a bucket serves the batches of its local copy, through a cache that is
// checked against the manifest: a corrupt cached shard is fetched again, and a corrupt
// shard in the bucket is a user error naming its URL.
func TestShardsFromBucket(t *testing.T) {
	s3test.Start(t)
	cache := t.TempDir()
	t.Setenv(CacheEnv, cache)
	dir := t.TempDir()
	m := packGo(t, dir)
	s3test.Upload(t, dir, "data/go")
	b, err := storage.Open(s3test.URL("data/go"))
	if err != nil {
		t.Fatal(err)
	}
	const G, M = 8, 2
	batches := func(spec string) []Batch {
		s, err := Open(spec, testT, G, M, 0, 1, 11)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out []Batch
		for range 30 {
			var b Batch
			if err := s.Next(&b); err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	want := batches(dir)
	same := func(what string, got []Batch) {
		t.Helper()
		for i := range want {
			if !sameBatch(&got[i], &want[i]) {
				t.Fatalf("%s: batch %d differs from the local copy's", what, i)
			}
		}
	}
	same("from the bucket", batches(s3test.URL("data/go")))
	same("its manifest's URL", batches(s3test.URL("data/go/"+ManifestName)))

	var body []byte
	cached := filepath.Join(cache, s3test.Bucket, "data", "go", m.Shards[0].Path)
	body, err = os.ReadFile(cached)
	if err != nil {
		t.Fatalf("the shard is not in the cache: %v", err)
	}
	body[len(body)/2] ^= 0x10
	if err := os.WriteFile(cached, body, 0o644); err != nil {
		t.Fatal(err)
	}
	same("after corrupting the cached copy", batches(s3test.URL("data/go")))
	if err := matches(cached, m.Shards[0]); err != nil {
		t.Errorf("the corrupt cached shard was not fetched again: %v", err)
	}

	if err := b.Put(m.Shards[1].Path, body); err != nil { // shard 0's damaged bytes
		t.Fatal(err)
	}
	os.RemoveAll(cache)
	_, err = Open(s3test.URL("data/go"), testT, G, M, 0, 1, 11)
	if !usererr.Is(err) || !strings.Contains(err.Error(), s3test.URL("data/go/"+m.Shards[1].Path)) {
		t.Errorf("a corrupt shard in the bucket: %v; want a user error naming its URL", err)
	}
}
