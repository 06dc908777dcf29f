// Package collective is herd's data-parallel communication: a group of ranks that
// all-reduce gradients, MAX-reduce FP8 amax values, broadcast, gather small blobs and meet
// at barriers. Small frames (gathers, barriers: membership, agreement, errors) travel on
// gRPC streams; the bulk of the bytes, the values of all-reduces and broadcasts, on one
// raw TCP connection per ordered pair of ranks (bulk.go), which costs a fraction of
// gRPC's CPU per byte. Both share the rank's one listener and its TLS and token.
//
// Every call carries a deadline (Options.Timeout): a peer that died or stopped answering
// becomes a *PeerError naming its rank, never a hang. Summation orders are fixed for a
// given world size, so results are bit-identical from run to run; AllReduceTree goes
// further and sums in one canonical binary tree over ranks (see tree.go).
//
// Transport security: every connection, gRPC or bulk, presents the group's token, and a
// rank refuses one without it (ErrBadToken on the refused side), so that another process
// cannot join a group, even on loopback. A group listens on loopback only unless it also
// has TLS. Several ranks may share one process, each with its own listener (NewLocal).
package collective

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

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
	// Token is a secret shared by the group's ranks: every connection presents it, and
	// one without it is refused. Empty means none, which lets any local process join as a
	// rank: give one (NewLocal makes one when it is empty; the orchestrator makes one per
	// group).
	Token string
	// Refused, if set, is called with the remote address of every connection this rank
	// refuses for a wrong or missing token, for the owner to report: a process that is
	// not of the group tried to join it, or a rank was given another token. It may be
	// called from several of the group's goroutines at once.
	Refused func(remote string)
}

// DefaultTimeout is the deadline of a collective call when Options.Timeout is 0: long
// enough for a slow rank's step skew, short enough that a dead peer is noticed soon.
const DefaultTimeout = 60 * time.Second

// pieceBytes is the size of one frame's payload: small enough that a ring's hops overlap
// (pipelining), large enough that per-frame overhead stays small.
const pieceBytes = 1 << 20

// maxFrame bounds a received frame: an all-gather's blob (gRPC) or a piece (bulk).
const maxFrame = 64 << 20

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

// ErrBadToken is wrapped by the *PeerError of a call that failed because its peer refused
// this rank's token: the ranks were given different tokens. Retrying does not help.
var ErrBadToken = errors.New("wrong or missing collective token")

// Group is one rank's membership in a collective group. Its methods must be called in the
// same order on every rank, from one goroutine at a time.
type Group struct {
	rank, world int
	opts        Options
	lis         net.Listener
	grpcLis     *connQueue // the listener's gRPC connections, for srv
	srv         *grpc.Server
	peers       []*peer // by rank; nil at this rank
	seq         uint64  // collective calls made so far

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	closed sync.Once
	wg     sync.WaitGroup // senders
}

// peer is the links with one other rank: frames received from it on either link, frames
// queued for it on each.
type peer struct {
	rank int
	addr string
	conn *grpc.ClientConn
	in   *queue[mem.Buffer] // frames from this peer, both links, in arrival order
	// inLinks counts the links from this peer open now; in closes when the last one
	// ends cleanly (a clean end of one link must not drop frames still on the other),
	// or at once when one breaks.
	inLinks atomic.Int32
	out     *queue[*[]byte]    // gRPC frames for this peer, in order
	bulk    *queue[*bulkFrame] // bulk frames for this peer, in order
	land    landing            // where its bulk frames of the current call go
	start   sync.Once          // of the gRPC sender
	startB  sync.Once          // of the bulk sender
}

// linkEnded records the end of a link from p: err nil for a clean end.
func (p *peer) linkEnded(err error) {
	if err != nil {
		p.in.close(fmt.Errorf("connection closed: %w", err))
	} else if p.inLinks.Add(-1) <= 0 {
		p.in.close(errors.New("connection closed"))
	}
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
	g := &Group{rank: rank, world: world, opts: opts, lis: lis, peers: make([]*peer, world),
		grpcLis: newConnQueue(lis.Addr())}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
	}
	for r, a := range addrs {
		if r == rank {
			continue
		}
		conn, err := grpc.NewClient(a, grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("collective: rank %d address %q: %w", r, a, err)
		}
		g.peers[r] = &peer{rank: r, addr: a, conn: conn, in: newQueue[mem.Buffer](),
			out: newQueue[*[]byte](), bulk: newQueue[*bulkFrame]()}
	}
	// TLS, when set, is served by accept for both kinds of connection, so gRPC's server
	// sees plain HTTP/2.
	g.srv = grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.MaxRecvMsgSize(maxFrame))
	g.srv.RegisterService(&serviceDesc, g)
	go g.srv.Serve(g.grpcLis) //nolint:errcheck // Serve returns when Close stops the server
	go g.accept()
	return g, nil
}

// loopback reports whether host:port names this machine only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && Loopback(host)
}

// Loopback reports whether host (a name or an IP, no port) names this machine only: the
// addresses a group may use without TLS.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NewLocal makes world ranks in this process, each listening on its own loopback port:
// the same code path as ranks on many hosts. Without opts.Token the ranks share a random
// one. Close each group when done.
func NewLocal(world int, opts Options) ([]*Group, error) {
	if opts.Token == "" {
		opts.Token = NewToken()
	}
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

// NewToken returns a fresh random token for a group (at least 128 random bits).
func NewToken() string {
	return rand.Text()
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
				p.bulk.close(ErrClosed)
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
		}
		g.grpcLis.Close()
		g.lis.Close()
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
	if tok := md.Get(mdToken); !g.tokenOK(tok) {
		remote := "unknown"
		if p, ok := grpcpeer.FromContext(stream.Context()); ok {
			remote = p.Addr.String()
		}
		g.refuse(remote)
		return status.Error(codes.Unauthenticated, ErrBadToken.Error())
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
	p.inLinks.Add(1)
	for {
		var f mem.Buffer
		if err := stream.RecvMsg(&f); err != nil {
			if errors.Is(err, io.EOF) { // the peer closed its side after its last frame
				err = nil
			}
			p.linkEnded(err)
			return nil
		}
		if p.in.push(f) != nil {
			f.Free() // this rank is closing: nobody will read it
		}
	}
}

// tokenOK reports whether tok, a connection's token as received, is the group's.
func (g *Group) tokenOK(tok []string) bool {
	if g.opts.Token == "" {
		return true
	}
	return len(tok) == 1 && subtle.ConstantTimeCompare([]byte(tok[0]), []byte(g.opts.Token)) == 1
}

// refuse reports a connection refused for its token.
func (g *Group) refuse(remote string) {
	if g.opts.Refused != nil {
		g.opts.Refused(remote)
	}
}

// refusedBy records that p refused this rank's token. The ranks were given different
// tokens, and no call of this rank can complete any more: every call fails at once, with
// an error naming p and wrapping ErrBadToken, instead of waiting for its deadline on a
// peer that p's refusal would not reach.
func (g *Group) refusedBy(p *peer) {
	err := &PeerError{Rank: p.rank, Self: g.rank, Op: "join",
		Err: fmt.Errorf("%s refused this rank's token: %w", p.addr, ErrBadToken)}
	for _, q := range g.peers {
		if q != nil {
			q.in.close(err)
		}
	}
	p.out.close(err)
	p.bulk.close(err)
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
	// The peer's reply, or its refusal, ends the stream; it is awaited beside the sends,
	// since a refused rank may have nothing more to send.
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		var ack mem.Buffer
		if err := stream.RecvMsg(&ack); status.Code(err) == codes.Unauthenticated {
			g.refusedBy(p)
		} else if err == nil {
			ack.Free()
		}
	}()
	for {
		f, err := p.out.pop(g.ctx.Done(), nil)
		if err != nil {
			stream.CloseSend()
			if errors.Is(err, ErrClosed) {
				<-ended // the peer has read everything
			}
			return
		}
		if err := stream.SendMsg(f); err != nil {
			<-ended // the stream's end says why: a refusal closes the queues with ErrBadToken
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
	held mem.Buffer   // the frame recv returned last, freed by the next recv or at the end
	kept []mem.Buffer // frames kept past the next recv (keep), freed by release
	// unsent counts, by rank, this call's bulk frames that point into the caller's memory
	// and are not written yet; written gets a token as each is.
	unsent  []atomic.Int64
	written chan struct{}
	armed   []int // ranks whose frames have zones (land)
}

func (g *Group) begin(ctx context.Context, op string) (*call, context.CancelFunc, error) {
	if g.ctx.Err() != nil {
		return nil, func() {}, ErrClosed
	}
	g.seq++
	ctx, cancel := context.WithTimeout(ctx, g.opts.Timeout)
	stop := context.AfterFunc(g.ctx, cancel)
	c := &call{g: g, op: op, seq: g.seq, done: ctx.Done(), ctx: ctx,
		unsent: make([]atomic.Int64, g.world), written: make(chan struct{}, 1)}
	return c, func() { c.disarm(); c.release(); stop(); cancel() }, nil
}

// flushed waits until the peers' links have taken every frame this call sent from the
// caller's memory, which the caller may change once the call returns. A call that
// succeeds ends with it.
func (c *call) flushed() error {
	for q := range c.unsent {
		for c.unsent[q].Load() > 0 {
			select {
			case <-c.written:
			case <-c.done:
				return c.timeout(q)
			}
		}
	}
	return nil
}

// timeout is the error of a call whose deadline passed waiting for rank q.
func (c *call) timeout(q int) error {
	if c.g.ctx.Err() != nil {
		return ErrClosed
	}
	return c.fail(q, fmt.Errorf("no answer within %v: %w", c.g.opts.Timeout, context.DeadlineExceeded))
}

// send queues a copy of payload for rank to, on the gRPC stream. Like every send it
// never blocks, so no order of sends and receives between ranks can deadlock.
func (c *call) send(to int, payload []byte) error {
	f := pool.Get(8 + len(payload))
	putSeq(*f, c.tag())
	copy((*f)[8:], payload)
	p := c.g.peers[to]
	if err := p.out.push(f); err != nil {
		return c.fail(to, err)
	}
	p.start.Do(func() { c.g.wg.Add(1); go c.g.sender(p) })
	return nil
}

// recvValues receives the frame of n values in codec cd from rank from: its payload, or
// landed true where the receiver already put the values where the call's zone for it
// said (see land).
func (c *call) recvValues(from int, cd codec, n int) (b []byte, landed bool, err error) {
	b, landed, err = c.recv(from)
	if err == nil && !landed && len(b) != n*cd.size() {
		err = c.fail(from, fmt.Errorf("sent %d bytes where %d values were expected: ranks passed buffers of different lengths", len(b), n))
	}
	return b, landed, err
}

// recv waits for the next frame from rank from and returns its payload, valid until the
// next recv or the end of the call, or landed true for a frame whose values went to
// their zone.
func (c *call) recv(from int) (payload []byte, landed bool, err error) {
	if c.held != nil {
		c.held.Free()
		c.held = nil
	}
	p := c.g.peers[from]
	// Frames of later calls may arrive first on the other link: they wait their turn.
	// A frame of this call or an earlier one is this call's, or proof that the peer is
	// out of step.
	buf, err := p.in.pop(c.done, func(b mem.Buffer) bool {
		f := b.ReadOnlyData()
		return len(f) < 8 || getSeq(f)>>8 <= c.seq
	})
	if err != nil {
		if c.ctx.Err() != nil || c.g.ctx.Err() != nil {
			return nil, false, c.timeout(from)
		}
		return nil, false, c.fail(from, err)
	}
	c.held = buf
	f := buf.ReadOnlyData()
	if len(f) < 8 {
		return nil, false, c.fail(from, errors.New("short frame"))
	}
	s := getSeq(f)
	landed = s&landedBit != 0
	if s &^= landedBit; s != c.tag() {
		kind := "unknown"
		if k := int(s & 0xff); k < len(opNames) {
			kind = opNames[k]
		}
		return nil, false, c.fail(from, fmt.Errorf("out of step: it is at collective call %d (%s), this rank at %d (%s); every rank must make the same calls in the same order",
			s>>8, kind, c.seq, c.op))
	}
	return f[8:], landed, nil
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

// keep makes the frame recv returned last stay valid until release, for a caller that
// reads several peers' frames at once.
func (c *call) keep() {
	if c.held != nil {
		c.kept = append(c.kept, c.held)
		c.held = nil
	}
}

// release frees the frame recv returned last and those kept.
func (c *call) release() {
	if c.held != nil {
		c.held.Free()
		c.held = nil
	}
	for _, b := range c.kept {
		b.Free()
	}
	c.kept = c.kept[:0]
}

func (c *call) fail(rank int, err error) error {
	if errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	var pe *PeerError
	if errors.As(err, &pe) { // a peer's fault that the call found out indirectly (refusedBy)
		rank, err = pe.Rank, pe.Err
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

// drain takes what the queue holds, for a link that ended to release.
func (q *queue[T]) drain() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

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

// pop returns the oldest frame that match accepts (any frame if match is nil), waiting
// until one comes, the queue closes, or done. One goroutine at a time pops a queue.
func (q *queue[T]) pop(done <-chan struct{}, match func(T) bool) (T, error) {
	var zero T
	for {
		q.mu.Lock()
		for i, f := range q.items {
			if match != nil && !match(f) {
				continue
			}
			if i == 0 {
				q.items[0] = zero
				q.items = q.items[1:]
			} else {
				q.items = append(q.items[:i], q.items[i+1:]...)
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
