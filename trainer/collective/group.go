// Package collective is herd's data-parallel communication: a group of ranks that
// all-reduce gradients, MAX-reduce FP8 amax values, broadcast, gather small blobs and meet
// at barriers, over gRPC streams.
//
// Every call carries a deadline (Options.Timeout): a peer that died or stopped answering
// becomes a *PeerError naming its rank, never a hang. Summation orders are fixed for a
// given world size, so results are bit-identical from run to run; AllReduceTree goes
// further and sums in one canonical binary tree over ranks (see tree.go).
//
// Transport security: a group listens on loopback only unless it has TLS and a shared
// token; several ranks may share one process, each with its own listener (NewLocal).
package collective

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"

	"github.com/herdml/herd/internal/usererr"
)

// Wire is the number format gradients travel in.
type Wire int

const (
	// F32 sends float32 values: exact.
	F32 Wire = iota
	// BF16 sends bfloat16 (rounded to nearest even) and accumulates in float32: half the
	// bytes; every rank still ends with the same values.
	BF16
)

// Options configure a group. The zero value is loopback, float32 on the wire, a 60 s
// deadline per call.
type Options struct {
	Timeout time.Duration // deadline of every collective call; 0 = DefaultTimeout
	Wire    Wire
	// TLS, with Token, is required to listen on or connect to a non-loopback address. It
	// serves the listener and dials peers (set RootCAs/ServerName as the hosts need).
	TLS *tls.Config
	// Token is a secret shared by the group's ranks; a stream without it is refused.
	Token string
}

// DefaultTimeout is the deadline of a collective call when Options.Timeout is 0: long
// enough for a slow rank's step skew, short enough that a dead peer is noticed soon.
const DefaultTimeout = 60 * time.Second

// pieceBytes is the size of one frame's payload: small enough that a ring's hops overlap
// (pipelining), large enough that per-message overhead stays small.
const pieceBytes = 1 << 20

// PeerError is a collective call that failed because of one peer: it did not answer in
// time, closed its connection, or is out of step. The orchestrator uses Rank to say which
// rank (and so which worker) failed.
type PeerError struct {
	Rank, Self int    // the peer at fault, and the rank that noticed
	Op         string // the collective call, e.g. "all-reduce"
	Err        error
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("collective %s on rank %d: rank %d: %v", e.Op, e.Self, e.Rank, e.Err)
}

func (e *PeerError) Unwrap() error { return e.Err }

// ErrClosed is returned by calls on a closed group, and by calls in flight when it closes.
var ErrClosed = errors.New("collective: group closed")

// Group is one rank's membership in a collective group. Its methods must be called in the
// same order on every rank, from one goroutine at a time.
type Group struct {
	rank, world int
	opts        Options
	lis         net.Listener
	srv         *grpc.Server
	peers       []*peer // by rank; nil at this rank
	seq         uint64  // collective calls made so far

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	closed sync.Once
	wg     sync.WaitGroup // senders
}

// peer is the link with one other rank: frames received from it, frames queued for it.
type peer struct {
	rank  int
	addr  string
	conn  *grpc.ClientConn
	in    *queue[mem.Buffer] // frames from this peer, in order
	out   *queue[*[]byte]    // frames for this peer, in order
	start sync.Once
}

// New joins rank of len(addrs) ranks: lis is this rank's listener (its address is
// addrs[rank]), addrs every rank's address. Connections are opened on first use, so the
// ranks may start in any order within the timeout.
func New(lis net.Listener, rank int, addrs []string, opts Options) (*Group, error) {
	world := len(addrs)
	if rank < 0 || rank >= world {
		return nil, fmt.Errorf("collective: rank %d out of range [0, %d)", rank, world)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	secure := opts.TLS != nil && opts.Token != ""
	for r, a := range append([]string{lis.Addr().String()}, addrs...) {
		if !secure && !loopback(a) {
			where := "parallel"
			if r > 0 {
				where = fmt.Sprintf("rank %d address %s", r-1, a)
			}
			return nil, usererr.New(where, "collective address %s is not loopback: gradients would travel in clear; give TLS and a shared token to use other addresses", a)
		}
	}
	g := &Group{rank: rank, world: world, opts: opts, lis: lis, peers: make([]*peer, world)}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	creds := insecure.NewCredentials()
	sopts := []grpc.ServerOption{grpc.ForceServerCodecV2(rawCodec{}), grpc.MaxRecvMsgSize(2 * pieceBytes),
		grpc.InitialWindowSize(windowBytes), grpc.InitialConnWindowSize(windowBytes),
		grpc.ReadBufferSize(ioBytes), grpc.WriteBufferSize(ioBytes)}
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
		sopts = append(sopts, grpc.Creds(creds))
	}
	for r, a := range addrs {
		if r == rank {
			continue
		}
		conn, err := grpc.NewClient(a, grpc.WithTransportCredentials(creds),
			grpc.WithInitialWindowSize(windowBytes), grpc.WithInitialConnWindowSize(windowBytes),
			grpc.WithReadBufferSize(ioBytes), grpc.WithWriteBufferSize(ioBytes),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("collective: rank %d address %q: %w", r, a, err)
		}
		g.peers[r] = &peer{rank: r, addr: a, conn: conn, in: newQueue[mem.Buffer](), out: newQueue[*[]byte]()}
	}
	g.srv = grpc.NewServer(sopts...)
	g.srv.RegisterService(&serviceDesc, g)
	go g.srv.Serve(lis) //nolint:errcheck // Serve returns when Close stops the server
	return g, nil
}

// windowBytes is gRPC's flow-control window: several pieces, so that a link is never idle
// waiting for a window update on loopback or a LAN.
const windowBytes = 16 << 20

// ioBytes is the size of gRPC's socket read and write buffers: a piece in few system calls.
const ioBytes = 1 << 20

// loopback reports whether host:port names this machine only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NewLocal makes world ranks in this process, each listening on its own loopback port:
// the same code path as ranks on many hosts. Close each group when done.
func NewLocal(world int, opts Options) ([]*Group, error) {
	lis := make([]net.Listener, world)
	addrs := make([]string, world)
	for r := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lis[:r] {
				l.Close()
			}
			return nil, fmt.Errorf("collective: listening for rank %d: %w", r, err)
		}
		lis[r], addrs[r] = l, l.Addr().String()
	}
	gs := make([]*Group, world)
	for r := range gs {
		g, err := New(lis[r], r, addrs, opts)
		if err != nil {
			for _, g := range gs[:r] {
				g.Close()
			}
			for _, l := range lis[r:] {
				l.Close()
			}
			return nil, err
		}
		gs[r] = g
	}
	return gs, nil
}

// Rank is this rank's number in [0, World).
func (g *Group) Rank() int { return g.rank }

// World is the number of ranks.
func (g *Group) World() int { return g.world }

// Addr is the address this rank listens on.
func (g *Group) Addr() string { return g.lis.Addr().String() }

// Close leaves the group: calls in flight return ErrClosed at once; frames already queued
// are still delivered (a rank that finished its last call may close while its peers are
// still receiving it), for at most the timeout; then the listener and the connections
// close, and peers see this rank's streams end.
func (g *Group) Close() error {
	g.closed.Do(func() {
		for _, p := range g.peers {
			if p != nil {
				p.in.close(ErrClosed)
				p.out.close(ErrClosed)
			}
		}
		flushed := make(chan struct{})
		go func() {
			g.wg.Wait()
			close(flushed)
		}()
		select {
		case <-flushed:
		case <-time.After(g.opts.Timeout):
		}
		g.cancel()
		<-flushed
		for _, p := range g.peers {
			if p != nil {
				p.conn.Close()
			}
		}
		if g.srv != nil {
			g.srv.Stop()
		} else {
			g.lis.Close()
		}
	})
	return nil
}

// Metadata keys of a Send stream.
const (
	mdRank  = "herd-rank"
	mdToken = "herd-token"
)

// send serves one peer's stream of frames to this rank.
func (g *Group) send(stream grpc.ServerStream) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if g.opts.Token != "" {
		tok := md.Get(mdToken)
		if len(tok) != 1 || subtle.ConstantTimeCompare([]byte(tok[0]), []byte(g.opts.Token)) != 1 {
			return errors.New("collective: wrong or missing token")
		}
	}
	ranks := md.Get(mdRank)
	if len(ranks) != 1 {
		return errors.New("collective: stream without a rank")
	}
	r, err := strconv.Atoi(ranks[0])
	if err != nil || r < 0 || r >= g.world || r == g.rank {
		return fmt.Errorf("collective: bad rank %q for a group of %d", ranks[0], g.world)
	}
	p := g.peers[r]
	for {
		var f mem.Buffer
		if err := stream.RecvMsg(&f); err != nil {
			p.in.close(fmt.Errorf("connection closed: %w", err))
			return nil
		}
		if p.in.push(f) != nil {
			f.Free() // this rank is closing: nobody will read it
		}
	}
}

// sender runs p's outgoing stream: it opens it, then sends queued frames in order until
// the group closes or the stream fails.
func (g *Group) sender(p *peer) {
	defer g.wg.Done()
	md := metadata.Pairs(mdRank, strconv.Itoa(g.rank))
	if g.opts.Token != "" {
		md.Set(mdToken, g.opts.Token)
	}
	ctx := metadata.NewOutgoingContext(g.ctx, md)
	stream, err := p.conn.NewStream(ctx, &serviceDesc.Streams[0], sendMethod)
	if err != nil {
		p.out.close(fmt.Errorf("opening a stream to %s: %w", p.addr, err))
		return
	}
	for {
		f, err := p.out.pop(g.ctx.Done())
		if err != nil {
			stream.CloseSend()
			if errors.Is(err, ErrClosed) {
				// Wait until the peer has read everything: its reply ends the stream.
				var ack mem.Buffer
				stream.RecvMsg(&ack) //nolint:errcheck // the end of the stream is all that is awaited
			}
			return
		}
		if err := stream.SendMsg(f); err != nil {
			p.out.close(fmt.Errorf("sending to %s: %w", p.addr, err))
			return
		}
	}
}

// call is one collective call in flight: its sequence number and deadline.
type call struct {
	g    *Group
	op   string
	seq  uint64
	done <-chan struct{}
	ctx  context.Context
	held mem.Buffer // the frame recv returned last, freed by the next recv or at the end
}

func (g *Group) begin(ctx context.Context, op string) (*call, context.CancelFunc, error) {
	if g.ctx.Err() != nil {
		return nil, func() {}, ErrClosed
	}
	g.seq++
	ctx, cancel := context.WithTimeout(ctx, g.opts.Timeout)
	stop := context.AfterFunc(g.ctx, cancel)
	c := &call{g: g, op: op, seq: g.seq, done: ctx.Done(), ctx: ctx}
	return c, func() { c.release(); stop(); cancel() }, nil
}

// send queues a copy of payload for rank to.
func (c *call) send(to int, payload []byte) error {
	f := c.frame(len(payload))
	copy((*f)[8:], payload)
	return c.sendFrame(to, f)
}

// frame takes a pooled frame of n payload bytes for the caller to fill ((*f)[8:]) and pass
// to sendFrame: encoding straight into the frame saves a copy.
func (c *call) frame(n int) *[]byte {
	f := pool.Get(8 + n)
	putSeq(*f, c.tag())
	return f
}

// sendFrame queues f for rank to. It never blocks, so no order of sends and receives
// between ranks can deadlock.
func (c *call) sendFrame(to int, f *[]byte) error {
	p := c.g.peers[to]
	if err := p.out.push(f); err != nil {
		return c.fail(to, err)
	}
	p.start.Do(func() { c.g.wg.Add(1); go c.g.sender(p) })
	return nil
}

// recvValues receives the frame of n values in codec cd from rank from.
func (c *call) recvValues(from int, cd codec, n int) ([]byte, error) {
	b, err := c.recv(from)
	if err == nil && len(b) != n*cd.size() {
		err = c.fail(from, fmt.Errorf("sent %d bytes where %d values were expected: ranks passed buffers of different lengths", len(b), n))
	}
	return b, err
}

// recv waits for the next frame from rank from and returns its payload, valid until the
// next recv or the end of the call.
func (c *call) recv(from int) ([]byte, error) {
	c.release()
	p := c.g.peers[from]
	buf, err := p.in.pop(c.done)
	if err != nil {
		if c.g.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if c.ctx.Err() != nil {
			err = fmt.Errorf("no answer within %v: %w", c.g.opts.Timeout, context.DeadlineExceeded)
		}
		return nil, c.fail(from, err)
	}
	c.held = buf
	f := buf.ReadOnlyData()
	if len(f) < 8 {
		return nil, c.fail(from, errors.New("short frame"))
	}
	if s := getSeq(f); s != c.tag() {
		return nil, c.fail(from, fmt.Errorf("out of step: it is at collective call %d (%s), this rank at %d (%s); every rank must make the same calls in the same order",
			s>>8, opNames[s&0xff], c.seq, c.op))
	}
	return f[8:], nil
}

// tag is the frame header: the call's sequence number and its kind, which a receiver
// checks so that ranks that disagree on the order of calls fail instead of mixing data.
func (c *call) tag() uint64 {
	for k, name := range opNames {
		if name == c.op {
			return c.seq<<8 | uint64(k)
		}
	}
	panic("collective: unknown call " + c.op)
}

// opNames are the kinds of call, by their number in frame headers.
var opNames = []string{"all-reduce", "tree all-reduce", "broadcast", "all-gather"}

// release frees the frame recv returned last.
func (c *call) release() {
	if c.held != nil {
		c.held.Free()
		c.held = nil
	}
}

func (c *call) fail(rank int, err error) error {
	if errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	return &PeerError{Rank: rank, Self: c.g.rank, Op: c.op, Err: err}
}

func putSeq(f []byte, s uint64) {
	for i := range 8 {
		f[i] = byte(s >> (8 * i))
	}
}

func getSeq(f []byte) uint64 {
	var s uint64
	for i := range 8 {
		s |= uint64(f[i]) << (8 * i)
	}
	return s
}

// queue is an unbounded FIFO of frames. Unbounded so that a rank never blocks on a send:
// what it holds is bounded by the data of the calls in flight.
type queue[T any] struct {
	mu    sync.Mutex
	items []T
	ready chan struct{} // has a token while items is not empty or err is set
	err   error
}

func newQueue[T any]() *queue[T] { return &queue[T]{ready: make(chan struct{}, 1)} }

func (q *queue[T]) push(f T) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return q.err
	}
	q.items = append(q.items, f)
	q.signal()
	return nil
}

func (q *queue[T]) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// close makes pushes fail with err and pops fail with err once the queue is drained.
func (q *queue[T]) close(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err == nil {
		q.err = err
	}
	q.signal()
}

// pop returns the oldest frame, waiting until one comes, the queue closes, or done.
func (q *queue[T]) pop(done <-chan struct{}) (T, error) {
	var zero T
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			f := q.items[0]
			q.items[0] = zero
			q.items = q.items[1:]
			if len(q.items) > 0 || q.err != nil {
				q.signal()
			}
			q.mu.Unlock()
			return f, nil
		}
		if q.err != nil {
			err := q.err
			q.mu.Unlock()
			return zero, err
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-done:
			return zero, context.DeadlineExceeded
		}
	}
}
