package collective

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/herdml/herd/internal/usererr"
)

// group makes world local ranks and closes them when the test ends.
func group(t testing.TB, world int, opts Options) []*Group {
	t.Helper()
	gs, err := NewLocal(world, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, g := range gs {
			g.Close()
		}
	})
	return gs
}

// each runs f on every rank at once and returns the errors by rank.
func each(gs []*Group, f func(g *Group) error) []error {
	errs := make([]error, len(gs))
	var wg sync.WaitGroup
	for r, g := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = f(g)
		}()
	}
	wg.Wait()
	return errs
}

func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// inputs are world random vectors of n values, the same for a given seed.
func inputs(world, n int, seed uint64) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	xs := make([][]float32, world)
	for r := range xs {
		xs[r] = make([]float32, n)
		for i := range xs[r] {
			xs[r][i] = float32(rng.NormFloat64())
		}
	}
	return xs
}

func clone(xs [][]float32) [][]float32 {
	out := make([][]float32, len(xs))
	for r, x := range xs {
		out[r] = append([]float32(nil), x...)
	}
	return out
}

// lengths cover empty chunks (n < world), odd sizes and chunks of several pieces.
var lengths = []int{0, 1, 3, 1001, 2*pieceBytes/4 + 7}

func TestAllReduceMatchesSequentialSum(t *testing.T) {
	for world := 1; world <= 4; world++ {
		gs := group(t, world, Options{})
		for _, n := range lengths {
			xs := inputs(world, n, uint64(n))
			want := make([]float64, n)
			wantMax := make([]float32, n)
			for i := range n {
				wantMax[i] = float32(math.Inf(-1))
				for r := range world {
					want[i] += float64(xs[r][i])
					wantMax[i] = max(wantMax[i], xs[r][i])
				}
			}
			sum, mx, tree := clone(xs), clone(xs), clone(xs)
			noErrors(t, each(gs, func(g *Group) error {
				if err := g.AllReduce(context.Background(), sum[g.Rank()], Sum); err != nil {
					return err
				}
				if err := g.AllReduce(context.Background(), mx[g.Rank()], Max); err != nil {
					return err
				}
				return g.AllReduceTree(context.Background(), tree[g.Rank()])
			}))
			treeWant := TreeSum(clone(xs))
			for r := range world {
				for i := range n {
					if d := math.Abs(float64(sum[r][i]) - want[i]); d > 1e-5*float64(world) {
						t.Fatalf("world %d n %d rank %d [%d]: ring sum %g, sequential %g", world, n, r, i, sum[r][i], want[i])
					}
					if sum[r][i] != sum[0][i] {
						t.Fatalf("world %d n %d: ranks 0 and %d differ at %d", world, n, r, i)
					}
					if mx[r][i] != wantMax[i] {
						t.Fatalf("world %d n %d rank %d [%d]: max %g, want %g", world, n, r, i, mx[r][i], wantMax[i])
					}
					if n > 0 && tree[r][i] != treeWant[i] {
						t.Fatalf("world %d n %d rank %d [%d]: tree %g, TreeSum %g", world, n, r, i, tree[r][i], treeWant[i])
					}
				}
			}
		}
	}
}

// The ring's order is fixed for a world size: the same inputs give the same bits.
func TestAllReduceIsDeterministic(t *testing.T) {
	gs := group(t, 3, Options{})
	xs := inputs(3, 100003, 9)
	var runs [2][][]float32
	for k := range runs {
		runs[k] = clone(xs)
		noErrors(t, each(gs, func(g *Group) error {
			return g.AllReduce(context.Background(), runs[k][g.Rank()], Sum)
		}))
	}
	for i := range xs[0] {
		if math.Float32bits(runs[0][0][i]) != math.Float32bits(runs[1][0][i]) {
			t.Fatalf("element %d: %g then %g", i, runs[0][0][i], runs[1][0][i])
		}
	}
}

// TreeSum over units equals the tree all-reduce of per-rank TreeSums whenever each rank
// holds a power-of-two number of units: the basis of bit-identical world sizes.
func TestTreeIsTheSameForEveryWorldSize(t *testing.T) {
	const units, n = 8, 513
	xs := inputs(units, n, 3)
	want := TreeSum(clone(xs))
	for _, world := range []int{1, 2, 4, 8} {
		gs := group(t, world, Options{})
		per := units / world
		got := make([][]float32, world)
		noErrors(t, each(gs, func(g *Group) error {
			r := g.Rank()
			got[r] = TreeSum(clone(xs[r*per : (r+1)*per]))
			return g.AllReduceTree(context.Background(), got[r])
		}))
		for r := range world {
			for i := range n {
				if math.Float32bits(got[r][i]) != math.Float32bits(want[i]) {
					t.Fatalf("world %d rank %d [%d]: %g, want %g", world, r, i, got[r][i], want[i])
				}
			}
		}
	}
}

func TestBF16WireKeepsRanksEqual(t *testing.T) {
	gs := group(t, 3, Options{Wire: BF16})
	xs := inputs(3, 4099, 5)
	want := TreeSum(clone(xs))
	ring, tree := clone(xs), clone(xs)
	noErrors(t, each(gs, func(g *Group) error {
		if err := g.AllReduce(context.Background(), ring[g.Rank()], Sum); err != nil {
			return err
		}
		return g.AllReduceTree(context.Background(), tree[g.Rank()])
	}))
	for _, got := range [][][]float32{ring, tree} {
		for i := range want {
			// Each of up to 3 roundings to 8 significant bits errs by 2^-9 relative.
			if d := math.Abs(float64(got[0][i] - want[i])); d > 0.02*(math.Abs(float64(want[i]))+1) {
				t.Fatalf("[%d]: %g over bf16, %g exact", i, got[0][i], want[i])
			}
			for r := range got {
				if got[r][i] != got[0][i] {
					t.Fatalf("[%d]: rank %d has %g, rank 0 %g", i, r, got[r][i], got[0][i])
				}
			}
		}
	}
}

func TestBroadcastGatherBarrier(t *testing.T) {
	gs := group(t, 4, Options{})
	xs := inputs(4, 300001, 2)
	bc := clone(xs)
	blobs := make([][][]byte, 4)
	noErrors(t, each(gs, func(g *Group) error {
		if err := g.Broadcast(context.Background(), bc[g.Rank()], 2); err != nil {
			return err
		}
		if err := g.Barrier(context.Background()); err != nil {
			return err
		}
		var err error
		blobs[g.Rank()], err = g.AllGather(context.Background(), []byte{byte(g.Rank()), 7})
		return err
	}))
	for r := range 4 {
		for i := range bc[r] {
			if bc[r][i] != xs[2][i] {
				t.Fatalf("rank %d [%d]: %g, root has %g", r, i, bc[r][i], xs[2][i])
			}
		}
		for q, b := range blobs[r] {
			if len(b) != 2 || b[0] != byte(q) || b[1] != 7 {
				t.Fatalf("rank %d got %v from rank %d", r, b, q)
			}
		}
	}
}

// A rank that never joins the call: its neighbours' calls fail within the timeout with an
// error that names it. The timeout is also all that ranks 0 and 1 have to reach each
// other (the tree's rank 0 hears rank 1 first): a second, so that a loaded machine that
// starts rank 1 late does not make rank 0 name it instead.
func TestSilentPeerIsNamed(t *testing.T) {
	gs := group(t, 3, Options{Timeout: time.Second})
	for _, op := range []string{"ring", "tree"} {
		errs := each(gs[:2], func(g *Group) error {
			x := make([]float32, 1000)
			if op == "ring" {
				return g.AllReduce(context.Background(), x, Sum)
			}
			return g.AllReduceTree(context.Background(), x)
		})
		var pe *PeerError
		if !errors.As(errs[0], &pe) || pe.Rank != 2 || !errors.Is(errs[0], context.DeadlineExceeded) {
			t.Fatalf("%s: rank 0 got %v, want a timeout naming rank 2", op, errs[0])
		}
		if errs[1] == nil {
			t.Fatalf("%s: rank 1 finished without rank 2", op)
		}
	}
}

// A rank whose process is gone: the others' calls fail naming it, and a closed group
// refuses calls.
func TestClosedPeerIsNamed(t *testing.T) {
	gs := group(t, 2, Options{Timeout: 2 * time.Second})
	noErrors(t, each(gs, func(g *Group) error { return g.Barrier(context.Background()) }))
	gs[1].Close()
	err := gs[0].AllReduce(context.Background(), make([]float32, 10), Sum)
	var pe *PeerError
	if !errors.As(err, &pe) || pe.Rank != 1 {
		t.Fatalf("got %v, want an error naming rank 1", err)
	}
	if err := gs[1].Barrier(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed group: %v, want ErrClosed", err)
	}
}

func TestOutOfStepIsNamed(t *testing.T) {
	gs := group(t, 2, Options{Timeout: 300 * time.Millisecond})
	errs := each(gs, func(g *Group) error {
		if g.Rank() == 1 {
			if err := g.Barrier(context.Background()); err == nil {
				return errors.New("barrier passed alone")
			}
		}
		return g.AllReduce(context.Background(), make([]float32, 4), Sum)
	})
	var pe *PeerError
	if !errors.As(errs[0], &pe) || pe.Rank != 1 {
		t.Fatalf("rank 0 got %v, want an error naming rank 1", errs[0])
	}
}

func TestNonLoopbackNeedsTLSAndToken(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	_, err = New(lis, 0, []string{lis.Addr().String(), "10.1.2.3:7000"}, Options{Token: "secret"})
	if !usererr.Is(err) {
		t.Fatalf("got %v, want a user error refusing 10.1.2.3 without TLS", err)
	}
}

// testTLS is a TLS config for 127.0.0.1 with a self-signed certificate that is also its
// own CA, for both ends, as `herd worker --collective-*` builds it.
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "herd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13,
	}
}

// With TLS and a token, gradients (bulk links) and gathers (gRPC) both travel encrypted
// and give the same sums; a rank with another token is refused on both, and its peer's
// error names it within the timeout.
func TestTLSAndToken(t *testing.T) {
	cfg := testTLS(t)
	gs := group(t, 3, Options{TLS: cfg, Token: "secret"})
	xs := inputs(3, 2*pieceBytes/4+5, 7)
	want := TreeSum(clone(xs))
	noErrors(t, each(gs, func(g *Group) error { return g.AllReduceTree(context.Background(), xs[g.Rank()]) }))
	for r, x := range xs {
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(want[i]) {
				t.Fatalf("rank %d [%d] = %g, want %g", r, i, x[i], want[i])
			}
		}
	}
	noErrors(t, each(gs, func(g *Group) error { return g.Barrier(context.Background()) }))

	lis := make([]net.Listener, 2)
	addrs := make([]string, 2)
	for r := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[r], addrs[r] = l, l.Addr().String()
	}
	bad := make([]*Group, 2)
	for r, tok := range []string{"secret", "guess"} {
		g, err := New(lis[r], r, addrs, Options{TLS: cfg, Token: tok, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		bad[r] = g
	}
	for _, op := range []string{"ring", "gather"} {
		errs := each(bad, func(g *Group) error {
			if op == "ring" {
				return g.AllReduce(context.Background(), make([]float32, 1000), Sum)
			}
			return g.Barrier(context.Background())
		})
		var pe *PeerError
		if !errors.As(errs[0], &pe) || pe.Rank != 1 {
			t.Errorf("%s: rank 0 got %v, want an error naming rank 1", op, errs[0])
		}
	}
}
