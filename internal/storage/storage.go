// Package storage opens the object-store URLs, s3://bucket/prefix, that herd takes wherever
// it takes a folder: checkpoints, shard sets, init.from, exports, sweep results. Any
// S3-compatible store works (AWS, MinIO, SeaweedFS, Ceph, GCS's interoperability endpoint).
//
// Where the store is and who is asking come from the standard AWS environment and files,
// never from herd's config, so that no secret is ever written into a run's config or its
// checkpoints: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, AWS_PROFILE with ~/.aws/config and ~/.aws/credentials, and the
// rest of the AWS SDK's chain (SSO, instance roles). With an endpoint set the bucket is
// addressed path-style (http://host/bucket/key), which every S3-compatible server serves;
// without one it is AWS itself, addressed virtual-host style.
//
// The client is the AWS SDK for Go v2, chosen over gocloud.dev/blob and minio-go because it
// is the one that reads that whole standard environment itself (service-specific
// endpoints, profiles, SSO, instance roles) and is maintained with S3; gocloud's s3blob
// wraps the same SDK behind a second abstraction herd does not need.
package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/herdml/herd/internal/usererr"
)

// Scheme starts every object-store URL.
const Scheme = "s3://"

// IsURL reports whether p names an object-store location rather than a local path.
func IsURL(p string) bool { return strings.HasPrefix(p, Scheme) }

// Join appends elements to a local path or an object-store URL, with "/" between them.
func Join(base string, elem ...string) string {
	if !IsURL(base) {
		return path.Join(append([]string{base}, elem...)...)
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(base, Scheme), "/")
	return Scheme + bucket + "/" + strings.TrimPrefix(path.Join(append([]string{prefix}, elem...)...), "/")
}

// Bucket is one prefix of a bucket, used like a folder: keys are relative to it.
type Bucket struct {
	client *s3.Client
	name   string // the bucket
	prefix string // "" or a key prefix without leading or trailing "/"
}

// Open returns the bucket prefix that url (s3://bucket/prefix) names. A malformed URL is a
// user error naming it, and so is one carrying credentials (s3://key:secret@bucket), which
// would be copied into every checkpoint with the config; a client that cannot be
// configured (a broken ~/.aws file) is an error saying so. Open does not reach the store.
func Open(url string) (*Bucket, error) {
	rest, ok := strings.CutPrefix(url, Scheme)
	name, prefix, _ := strings.Cut(rest, "/")
	if strings.ContainsAny(name, "@:") {
		return nil, usererr.New(Scheme+"…@"+name[strings.LastIndexAny(name, "@:")+1:], "credentials never go in a URL or the config: "+
			"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, in the environment")
	}
	if !ok || name == "" || strings.ContainsAny(name, " \\") {
		return nil, usererr.New(url, "not an object-store URL: write s3://bucket/prefix")
	}
	c, err := client()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return &Bucket{client: c, name: name, prefix: strings.Trim(path.Clean("/"+prefix), "/")}, nil
}

// client configures an S3 client from the environment. A client is made per Open, which
// is rare (once per run folder or shard set), so a change of environment, as between
// tests, is always seen.
func client() (*s3.Client, error) {
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		return nil, fmt.Errorf("configuring the S3 client from the AWS environment and ~/.aws: %w", err)
	}
	if cfg.Region == "" {
		// S3-compatible servers accept any region; AWS redirects a wrong one, and the
		// error names the bucket's region.
		cfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = o.BaseEndpoint != nil
	}), nil
}

// String is the URL of the bucket prefix.
func (b *Bucket) String() string { return strings.TrimSuffix(Scheme+b.name+"/"+b.prefix, "/") }

// Sub is the bucket prefix under b named by rel ("a/b").
func (b *Bucket) Sub(rel string) *Bucket {
	c := *b
	c.prefix = strings.Trim(path.Join(b.prefix, rel), "/")
	return &c
}

func (b *Bucket) key(rel string) string { return strings.TrimPrefix(path.Join(b.prefix, rel), "/") }

// timeout bounds one request, so that a store that stopped answering fails the caller
// instead of hanging it; the SDK retries transient failures within it.
const timeout = 10 * time.Minute

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

// Put writes object rel with body, replacing it if it exists.
func (b *Bucket) Put(rel string, body []byte) error {
	c, cancel := ctx()
	defer cancel()
	_, err := b.client.PutObject(c, &s3.PutObjectInput{
		Bucket: &b.name, Key: aws.String(b.key(rel)), Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
	})
	return b.wrap("writing", rel, err)
}

// PutFile uploads the local file at p as object rel, streaming it from the file.
func (b *Bucket) PutFile(rel, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	_, err = b.client.PutObject(c, &s3.PutObjectInput{
		Bucket: &b.name, Key: aws.String(b.key(rel)), Body: f, ContentLength: aws.Int64(fi.Size()),
	})
	return b.wrap("writing", rel, err)
}

// PutDir uploads every file under the local folder dir, keyed by its path relative to
// dir, with the files named in last uploaded after all others (in that order): a reader
// that finds the last one finds the rest.
func (b *Bucket) PutDir(dir string, last ...string) error {
	var first []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err == nil && !slices.Contains(last, filepath.ToSlash(rel)) {
			first = append(first, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, rel := range append(first, last...) {
		if err := b.PutFile(rel, filepath.Join(dir, filepath.FromSlash(rel))); err != nil {
			return err
		}
	}
	return nil
}

// Get opens object rel for reading. A missing object is an error wrapping fs.ErrNotExist.
// The reader has Stat, whose Size is the object's.
func (b *Bucket) Get(rel string) (io.ReadCloser, error) {
	c, cancel := ctx()
	out, err := b.client.GetObject(c, &s3.GetObjectInput{Bucket: &b.name, Key: aws.String(b.key(rel))})
	if err != nil {
		cancel()
		return nil, b.wrap("reading", rel, err)
	}
	return &object{ReadCloser: out.Body, cancel: cancel, name: path.Base(rel), size: aws.ToInt64(out.ContentLength)}, nil
}

// Exists reports whether object rel exists.
func (b *Bucket) Exists(rel string) (bool, error) {
	c, cancel := ctx()
	defer cancel()
	_, err := b.client.HeadObject(c, &s3.HeadObjectInput{Bucket: &b.name, Key: aws.String(b.key(rel))})
	err = b.wrap("looking up", rel, err)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// List returns every object under rel ("" for all of b), as paths relative to b, in
// lexical order. A missing bucket is an error wrapping fs.ErrNotExist.
func (b *Bucket) List(rel string) ([]string, error) {
	c, cancel := ctx()
	defer cancel()
	prefix := b.key(rel)
	if prefix != "" {
		prefix += "/"
	}
	var keys []string
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: &b.name, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(c)
		if err != nil {
			return nil, b.wrap("listing", rel, err)
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), b.prefix)
			keys = append(keys, strings.TrimPrefix(k, "/"))
		}
	}
	return keys, nil
}

// Delete removes objects; one that does not exist is not an error.
func (b *Bucket) Delete(rels ...string) error {
	for _, rel := range rels {
		c, cancel := ctx()
		_, err := b.client.DeleteObject(c, &s3.DeleteObjectInput{Bucket: &b.name, Key: aws.String(b.key(rel))})
		cancel()
		if err := b.wrap("deleting", rel, err); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Probe checks that herd may write under b, by writing and deleting one empty object, so
// that a wrong bucket or missing credentials fail before any work is done.
func (b *Bucket) Probe() error {
	const probe = ".herd-probe"
	if err := b.Put(probe, nil); err != nil {
		return err
	}
	return b.Delete(probe)
}

// Copy copies object from to object to, inside the store.
func (b *Bucket) Copy(from, to string) error {
	c, cancel := ctx()
	defer cancel()
	_, err := b.client.CopyObject(c, &s3.CopyObjectInput{
		Bucket: &b.name, Key: aws.String(b.key(to)), CopySource: aws.String(b.name + "/" + b.key(from)),
	})
	return b.wrap("copying", from, err)
}

// wrap names the object in err, and makes a missing object or bucket wrap fs.ErrNotExist.
func (b *Bucket) wrap(op, rel string, err error) error {
	if err == nil {
		return nil
	}
	var nk *types.NoSuchKey
	var nf *types.NotFound
	var nb *types.NoSuchBucket
	var api smithy.APIError
	switch {
	case errors.As(err, &nk), errors.As(err, &nf), errors.As(err, &nb),
		errors.As(err, &api) && (api.ErrorCode() == "NoSuchKey" || api.ErrorCode() == "NotFound" || api.ErrorCode() == "NoSuchBucket"):
		return &fs.PathError{Op: op, Path: b.Sub(rel).String(), Err: fs.ErrNotExist}
	}
	return fmt.Errorf("%s %s: %w", op, b.Sub(rel).String(), err)
}

// object is a GetObject body that knows its size (checkpoint retention reads sizes
// without reading the bytes).
type object struct {
	io.ReadCloser
	cancel context.CancelFunc
	name   string
	size   int64
}

func (o *object) Close() error {
	err := o.ReadCloser.Close()
	o.cancel()
	return err
}

func (o *object) Stat() (fs.FileInfo, error) { return info{o.name, o.size}, nil }

type info struct {
	name string
	size int64
}

func (i info) Name() string       { return i.name }
func (i info) Size() int64        { return i.size }
func (i info) Mode() fs.FileMode  { return 0o444 }
func (i info) ModTime() time.Time { return time.Time{} }
func (i info) IsDir() bool        { return false }
func (i info) Sys() any           { return nil }
