// Package s3test starts a real S3-compatible server for tests: SeaweedFS's `weed server
// -s3`, on loopback ports of its own, with one identity and one bucket. Tests of herd's
// object storage run against it, never against a mock of the S3 API, so that what they
// pass is what a user's store does.
//
// The binary is $HERD_WEED, else `weed` on PATH; without it a test skips and says how to
// install it (tools/install-weed.sh, which .ci/run runs).
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/herdml/herd/internal/storage"
)

// Bucket is the bucket Start creates.
const Bucket = "herd-test"

const (
	accessKey = "herdtest"
	secretKey = "herdtest-secret"
)

// Server is a running weed.
type Server struct {
	Endpoint string   // http://127.0.0.1:port of its S3 API
	Env      []string // the AWS environment Start set, KEY=value, for child processes
	cmd      *exec.Cmd
}

// Stop kills the server before the test ends: the store becomes unreachable.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// Start runs weed in a temporary folder for the rest of the test, waits until its S3 API
// answers and has Bucket, and points the standard AWS environment at it with t.Setenv
// (AWS_ENDPOINT_URL_S3, the keys, AWS_REGION, and empty AWS config files, so that the
// tester's ~/.aws plays no part); herd processes the test starts inherit it. It skips the
// test when no weed binary is found.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := os.Getenv("HERD_WEED")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("weed"); err != nil {
			t.Skip("no SeaweedFS weed binary (set HERD_WEED or put weed on PATH): install it with tools/install-weed.sh")
		}
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "s3.json")
	identity := fmt.Sprintf(`{"identities":[{"name":"herd","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","List","Write","Tagging"]}]}`, accessKey, secretKey)
	if err := os.WriteFile(conf, []byte(identity), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 8)
	args := []string{"server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir=" + dir, "-filer", "-s3",
		"-s3.config=" + conf, "-s3.port.iceberg=0", "-s3.autoCreateBucket=false", "-volume.max=16", "-master.volumeSizeLimitMB=64"}
	for i, flag := range []string{"master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc"} {
		args = append(args, "-"+flag+"="+strconv.Itoa(ports[i]))
	}
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(dir, "weed.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	s := &Server{Endpoint: "http://127.0.0.1:" + strconv.Itoa(ports[6]), cmd: cmd}
	t.Cleanup(func() {
		s.Stop()
		logf.Close()
	})
	s.Env = []string{
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint, "AWS_ACCESS_KEY_ID=" + accessKey, "AWS_SECRET_ACCESS_KEY=" + secretKey,
		"AWS_REGION=us-east-1", "AWS_CONFIG_FILE=" + filepath.Join(dir, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "aws-credentials"), "AWS_PROFILE=", "AWS_ENDPOINT_URL=",
	}
	for _, kv := range s.Env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint), Region: "us-east-1", UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(Bucket)})
		cancel()
		var owned *types.BucketAlreadyOwnedByYou
		if err == nil || errors.As(err, &owned) {
			return s
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("weed's S3 API at %s did not create bucket %s in 2 minutes: %v\nweed's log:\n%s", s.Endpoint, Bucket, err, tail(log))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Upload copies the files under folder dir to s3://Bucket/rel.
func Upload(t testing.TB, dir, rel string) {
	t.Helper()
	b, err := storage.Open(URL(rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PutDir(dir); err != nil {
		t.Fatal(err)
	}
}

// URL is s3://Bucket/rel.
func URL(rel string) string { return "s3://" + Bucket + "/" + rel }

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}

// freePorts returns n loopback ports free now (the kernel's choice, released at once).
func freePorts(t testing.TB, n int) []int {
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
