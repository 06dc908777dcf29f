package data

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdml/herd/internal/usererr"
)

// Arrow Flight serving of datasets. `herd data serve DIR` serves every dataset folder
// under DIR (DIR/NAME/manifest.json) as grpc://host:port/NAME. A client fetches the
// manifest with the action "manifest", then record batches with DoGet tickets naming
// (dataset, shard, batch), and reads them through the same Shards code as local files:
// the same row checks, the same Stream and sampler, so the same batches.

// FlightTicket names one record batch of a served dataset.
type FlightTicket struct {
	Dataset string `json:"dataset"`
	Shard   int    `json:"shard"`
	Batch   int    `json:"batch"`
}

// FlightServer serves the datasets under a folder.
type FlightServer struct {
	flight.BaseFlightServer
	dir string

	mu   sync.Mutex
	sets map[string]*Shards
}

// NewFlightServer serves the datasets in the folders under dir.
func NewFlightServer(dir string) *FlightServer {
	return &FlightServer{dir: dir, sets: map[string]*Shards{}}
}

func (s *FlightServer) dataset(name string) (*Shards, error) {
	if !filepath.IsLocal(name) || name == "" {
		return nil, status.Errorf(codes.InvalidArgument, "dataset name %q must be a folder inside the served folder", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh := s.sets[name]; sh != nil {
		return sh, nil
	}
	manifest := filepath.Join(s.dir, name, ManifestName)
	if _, err := os.Stat(manifest); err != nil {
		return nil, status.Errorf(codes.NotFound, "no dataset %q on this server", name)
	}
	sh, err := OpenShards(manifest, nil)
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "%v", err)
	}
	s.sets[name] = sh
	return sh, nil
}

// DoAction answers "manifest" (body: dataset name) with the dataset's manifest.
func (s *FlightServer) DoAction(a *flight.Action, stream flight.FlightService_DoActionServer) error {
	if a.Type != "manifest" {
		return status.Errorf(codes.Unimplemented, "unknown action %q; herd serves \"manifest\"", a.Type)
	}
	sh, err := s.dataset(string(a.Body))
	if err != nil {
		return err
	}
	body, err := json.Marshal(&sh.Manifest)
	if err != nil {
		return err
	}
	return stream.Send(&flight.Result{Body: body})
}

// DoGet streams the record batch a FlightTicket names.
func (s *FlightServer) DoGet(t *flight.Ticket, stream flight.FlightService_DoGetServer) error {
	var tk FlightTicket
	if err := json.Unmarshal(t.Ticket, &tk); err != nil {
		return status.Errorf(codes.InvalidArgument, "ticket: %v", err)
	}
	sh, err := s.dataset(tk.Dataset)
	if err != nil {
		return err
	}
	if tk.Shard < 0 || tk.Shard >= len(sh.Manifest.Shards) || tk.Batch < 0 ||
		int64(tk.Batch*sh.Manifest.BatchRows) >= sh.Manifest.Shards[tk.Shard].Rows {
		return status.Errorf(codes.InvalidArgument, "no shard %d batch %d in %s", tk.Shard, tk.Batch, tk.Dataset)
	}
	b, err := sh.batch(tk.Shard, tk.Batch)
	if err != nil {
		return status.Errorf(codes.DataLoss, "%v", err)
	}
	w := flight.NewRecordWriter(stream, ipc.WithSchema(b.rec.Schema()))
	defer w.Close()
	return w.Write(b.rec)
}

// Close releases every dataset.
func (s *FlightServer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sh := range s.sets {
		sh.Close()
	}
	return nil
}

// ServeOptions secure a Flight server. On a loopback address none is needed; on any other
// both TLS and a token are required, so that training data never leaves the host
// unencrypted or to anyone who asks.
type ServeOptions struct {
	Addr     string // host:port; default 127.0.0.1:8815
	CertFile string // TLS certificate (PEM)
	KeyFile  string // TLS key (PEM)
	Token    string // clients send "authorization: Bearer TOKEN"
}

// Listen checks the options and returns a gRPC server with the Flight service registered
// and its listener; call Serve on it.
func (s *FlightServer) Listen(o ServeOptions) (*grpc.Server, net.Listener, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8815"
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, nil, usererr.New("--addr", "%v; want host:port", err)
	}
	ip := net.ParseIP(host)
	loopback := host == "localhost" || (ip != nil && ip.IsLoopback())
	if !loopback && (o.CertFile == "" || o.KeyFile == "" || o.Token == "") {
		return nil, nil, usererr.New("--addr", "%s is not a loopback address: serving beyond this host needs --tls-cert, --tls-key and --token", o.Addr)
	}
	var opts []grpc.ServerOption
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, nil, usererr.New("--tls-cert", "cannot load the TLS key pair: %v", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	}
	if o.Token != "" {
		check := func(ctx context.Context) error {
			md, _ := metadata.FromIncomingContext(ctx)
			want := "Bearer " + o.Token
			for _, v := range md.Get("authorization") {
				if subtle.ConstantTimeCompare([]byte(v), []byte(want)) == 1 {
					return nil
				}
			}
			return status.Error(codes.Unauthenticated, "missing or wrong token")
		}
		opts = append(opts,
			grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if err := check(ctx); err != nil {
					return nil, err
				}
				return h(ctx, req)
			}),
			grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				if err := check(ss.Context()); err != nil {
					return err
				}
				return h(srv, ss)
			}))
	}
	lis, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, nil, usererr.New("--addr", "cannot listen on %s: %v", o.Addr, err)
	}
	gs := grpc.NewServer(opts...)
	flight.RegisterFlightServiceServer(gs, s)
	return gs, lis, nil
}

// remote fetches record batches over Flight, keeping the most recent few.
type remote struct {
	client  flight.Client
	dataset string
	token   string
	mem     memory.Allocator

	cache map[[2]int]*shardBatch
	order [][2]int // cache keys, oldest first
}

// remoteCacheBatches bounds the record batches a client holds.
const remoteCacheBatches = 64

func (r *remote) ctx() context.Context {
	ctx := context.Background()
	if r.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+r.token)
	}
	return ctx
}

// batch is called with s.mu held.
func (r *remote) batch(s *Shards, k, bi int, first, want int64) (*shardBatch, error) {
	key := [2]int{k, bi}
	if b := r.cache[key]; b != nil {
		return b, nil
	}
	name := r.dataset + "/" + s.Manifest.Shards[k].Path
	ticket, _ := json.Marshal(FlightTicket{Dataset: r.dataset, Shard: k, Batch: bi})
	stream, err := r.client.DoGet(r.ctx(), &flight.Ticket{Ticket: ticket})
	if err != nil {
		return nil, fmt.Errorf("fetching %s batch %d: %w", name, bi, err)
	}
	rd, err := flight.NewRecordReader(stream, ipc.WithAllocator(r.mem))
	if err != nil {
		return nil, fmt.Errorf("fetching %s batch %d: %w", name, bi, err)
	}
	defer rd.Release()
	if !rd.Next() {
		if err := rd.Err(); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("fetching %s batch %d: %w", name, bi, err)
		}
		return nil, fmt.Errorf("fetching %s batch %d: empty stream", name, bi)
	}
	rec := rd.RecordBatch()
	rec.Retain()
	b, err := s.checkBatch(rec, name, bi, first, want)
	if err != nil {
		return nil, err
	}
	if len(r.order) == remoteCacheBatches {
		old := r.order[0]
		r.cache[old].rec.Release()
		delete(r.cache, old)
		r.order = r.order[1:]
	}
	r.cache[key] = b
	r.order = append(r.order, key)
	return b, nil
}

func (r *remote) close() {
	for _, b := range r.cache {
		b.rec.Release()
	}
	r.cache, r.order = nil, nil
	r.client.Close()
}

// OpenRemote connects to grpc://host:port/NAME and reads the manifest. The token, if the
// server wants one, comes from $HERD_DATA_TOKEN; TLS is used when $HERD_DATA_CA names the
// server's CA certificate (PEM), and is required for hosts other than loopback.
func OpenRemote(spec string) (*Shards, error) {
	u, err := url.Parse(spec)
	if err != nil || u.Scheme != "grpc" || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return nil, usererr.New(spec, "want grpc://host:port/dataset")
	}
	creds := insecure.NewCredentials()
	if ca := os.Getenv("HERD_DATA_CA"); ca != "" {
		pem, err := os.ReadFile(ca)
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			return nil, usererr.New("HERD_DATA_CA", "cannot read a PEM certificate from %s", ca)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	} else if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, usererr.New(spec, "a remote dataset server needs TLS: set HERD_DATA_CA to its CA certificate")
	}
	client, err := flight.NewClientWithMiddleware(u.Host, nil, nil, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", u.Host, err)
	}
	r := &remote{client: client, dataset: strings.Trim(u.Path, "/"), token: os.Getenv("HERD_DATA_TOKEN"),
		mem: memory.DefaultAllocator, cache: map[[2]int]*shardBatch{}}
	stream, err := client.DoAction(r.ctx(), &flight.Action{Type: "manifest", Body: []byte(r.dataset)})
	var res *flight.Result
	if err == nil {
		res, err = stream.Recv()
	}
	if err != nil {
		client.Close()
		if st, ok := status.FromError(err); ok && (st.Code() == codes.NotFound || st.Code() == codes.Unauthenticated || st.Code() == codes.InvalidArgument) {
			return nil, usererr.New(spec, "%s", st.Message())
		}
		return nil, fmt.Errorf("reading the manifest of %s: %w", spec, err)
	}
	s := &Shards{dir: spec, mem: r.mem, remote: r}
	dec := json.NewDecoder(bytes.NewReader(res.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s.Manifest); err != nil {
		client.Close()
		return nil, usererr.New(spec, "the server sent no herd manifest: %v", err)
	}
	if err := s.Manifest.check(spec); err != nil {
		client.Close()
		return nil, err
	}
	s.start = []int64{0}
	for _, sh := range s.Manifest.Shards {
		s.start = append(s.start, s.start[len(s.start)-1]+sh.Rows)
	}
	return s, nil
}
