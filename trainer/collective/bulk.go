package collective

// This file is the bulk transport: the values of all-reduces and broadcasts travel on one
// raw TCP connection per ordered pair of ranks (TLS when the group has it), not on gRPC,
// whose HTTP/2 framing, flow control and copies cost several times the CPU per byte of
// the socket itself. The connection arrives at the rank's one listener, beside the gRPC
// connections: accept tells them apart by their first bytes.
//
// A bulk connection opens with bulkMagic, the sender's rank (4 bytes, little-endian) and
// the group's token (4-byte length, then the bytes); the receiver answers one byte: 1 once
// it accepts, 0 when it refuses the token (then it hangs up). Then each frame is its
// length (8 bytes, little-endian) and the frame itself, as on gRPC: the 8-byte call tag,
// then the payload. A length of bulkEnd ends the link cleanly: the sender has nothing
// more, and the receiver closes the connection.
//
// float32 values go to the socket straight from the caller's slice (no encoding copy);
// the call returns once they are written (call.flushed), since the caller may then change
// them.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
	"unsafe"

	"google.golang.org/grpc/mem"
)

// bulkMagic opens a bulk connection; a gRPC connection opens with HTTP/2's "PRI * HTTP/2.0".
const bulkMagic = "HERDBULK"

// bulkEnd is the length that ends a link cleanly.
const bulkEnd = ^uint64(0)

// bulkALPN is the TLS application protocol a bulk connection asks for; the listener offers
// it beside gRPC's "h2".
const bulkALPN = "herd-bulk"

// landedBit marks, in a frame's tag, a frame whose values the receiver has already put
// in their zone: the frame then has no payload, and only keeps the call's order.
const landedBit = 1 << 7

// landing is where the frames of one call from a peer go straight from the socket: into
// the caller's slice, copied or added, instead of a frame that the call then copies or
// adds. That saves a pass over every received byte, and the additions run on the link's
// receiving goroutine, beside the call's own. The call arms a zone (land) after its own
// last access to those values, so that the accesses are ordered for the race detector too
// (the network orders them in fact); a frame that arrives before its zone is armed is
// queued and decoded as usual.
type landing struct {
	mu    sync.Mutex
	tag   uint64 // the call the zones are for
	zones []zone // by the frame's index among the call's frames from this peer
	rxTag uint64 // the call whose frames are arriving
	rxN   int    // how many of them have arrived
}

// zone is where one frame's float32 values go: added into dst, or copied there.
type zone struct {
	dst []float32
	add bool
}

// land arms zones for the frames of this call from rank from, by their index among them
// (a nil dst: none); the call disarms them when it ends. Only float32 sums and copies
// land (codec.zones is nil otherwise). After a call that failed, a frame already being
// received may still land until the group is closed.
func (c *call) land(from int, zones []zone) {
	if zones == nil {
		return
	}
	l := &c.g.peers[from].land
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tag, l.zones = c.tag(), zones
	c.armed = append(c.armed, from)
}

// disarm drops the zones this call armed.
func (c *call) disarm() {
	for _, q := range c.armed {
		l := &c.g.peers[q].land
		l.mu.Lock()
		if l.tag == c.tag() {
			l.zones = nil
		}
		l.mu.Unlock()
	}
}

// next returns the zone of the frame with tag that just arrived, if armed, and disarms it.
func (l *landing) next(tag uint64, bytes int) (zone, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tag != l.rxTag {
		l.rxTag, l.rxN = tag, 0
	}
	i := l.rxN
	l.rxN++
	if tag != l.tag || i >= len(l.zones) || l.zones[i].dst == nil || 4*len(l.zones[i].dst) != bytes {
		return zone{}, false
	}
	z := l.zones[i]
	l.zones[i] = zone{}
	return z, true
}

// zones are a call's zones for the frames of spans ss (in order, one frame per piece),
// when cd's values can land: float32 in machine order, summed or copied.
func (cd codec) zones(x []float32, op Op, add bool, ss ...[]span) []zone {
	if cd.wire != F32 || !littleEndian || op != Sum {
		return nil
	}
	var zs []zone
	for _, ps := range ss {
		for _, p := range ps {
			zs = append(zs, zone{dst: x[p.lo:p.hi], add: add})
		}
	}
	return zs
}

// bulkFrame is a frame queued for a bulk link: head (its length, and its tag when data is
// the caller's memory), then data. own, if set, is the pooled buffer data lives in, freed
// once written; otherwise the write is counted off c.unsent.
type bulkFrame struct {
	head  [16]byte
	nhead int
	data  []byte
	own   *[]byte
	c     *call
	to    int
}

// sent releases f once written, or once its link failed.
func (f *bulkFrame) sent() {
	if f.own != nil {
		frames.Put(f.own)
		return
	}
	f.c.unsent[f.to].Add(-1)
	select {
	case f.c.written <- struct{}{}:
	default:
	}
}

// sendValues queues x[s] in codec cd for rank to, on the bulk link: straight from x for
// float32 on a little-endian machine, else encoded into a pooled frame.
func (c *call) sendValues(to int, cd codec, x []float32, s span) error {
	f := &bulkFrame{c: c, to: to}
	if cd.wire == F32 && littleEndian {
		v := x[s.lo:s.hi]
		f.data = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
		binary.LittleEndian.PutUint64(f.head[:], uint64(8+len(f.data)))
		putSeq(f.head[8:], c.tag())
		f.nhead = 16
		c.unsent[to].Add(1)
	} else {
		f.own = frames.Get(8 + (s.hi-s.lo)*cd.size())
		putSeq(*f.own, c.tag())
		cd.encode((*f.own)[8:], x[s.lo:s.hi])
		f.data = *f.own
		binary.LittleEndian.PutUint64(f.head[:], uint64(len(f.data)))
		f.nhead = 8
	}
	p := c.g.peers[to]
	if err := p.bulk.push(f); err != nil {
		f.sent()
		return c.fail(to, err)
	}
	p.startB.Do(func() { c.g.wg.Add(1); go c.g.bulkSender(p) })
	return nil
}

// bulkSender dials p's bulk link and writes its queued frames in order until the group
// closes or the link fails; then it releases what is left.
func (g *Group) bulkSender(p *peer) {
	defer g.wg.Done()
	defer func() {
		for _, f := range p.bulk.drain() {
			f.sent()
		}
	}()
	conn, err := g.dialBulk(p.addr)
	if errors.Is(err, ErrBadToken) {
		g.refusedBy(p)
		return
	}
	if err != nil {
		p.bulk.close(fmt.Errorf("opening a bulk link to %s: %w", p.addr, err))
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(g.ctx, func() { conn.Close() })
	defer stop()
	for {
		f, err := p.bulk.pop(g.ctx.Done(), nil)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				// Say so, then wait until the peer has read everything and hung up.
				var end [8]byte
				binary.LittleEndian.PutUint64(end[:], bulkEnd)
				if _, err := conn.Write(end[:]); err == nil {
					io.Copy(io.Discard, conn) //nolint:errcheck // the end of the connection is all that is awaited
				}
			}
			return
		}
		bufs := net.Buffers{f.head[:f.nhead], f.data}
		_, err = bufs.WriteTo(conn)
		f.sent()
		if err != nil {
			p.bulk.close(fmt.Errorf("sending to %s: %w", p.addr, err))
			return
		}
	}
}

// dialBulk opens a bulk connection to addr and introduces this rank, within the timeout.
func (g *Group) dialBulk(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(g.ctx, g.opts.Timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if g.opts.TLS != nil {
		cfg := g.opts.TLS.Clone()
		cfg.NextProtos = []string{bulkALPN}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		conn = tls.Client(conn, cfg)
	}
	hello := make([]byte, 0, len(bulkMagic)+8+len(g.opts.Token))
	hello = append(hello, bulkMagic...)
	hello = binary.LittleEndian.AppendUint32(hello, uint32(g.rank))
	hello = binary.LittleEndian.AppendUint32(hello, uint32(len(g.opts.Token)))
	hello = append(hello, g.opts.Token...)
	var ok [1]byte
	if _, err = conn.Write(hello); err == nil {
		_, err = io.ReadFull(conn, ok[:])
	}
	if err == nil && ok[0] != 1 {
		err = ErrBadToken
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %v: %w", g.opts.Timeout, context.DeadlineExceeded)
		}
		return nil, fmt.Errorf("refused or unanswered: %w", err)
	}
	return conn, nil
}

// accept serves the listener: each connection, after the TLS handshake when the group has
// TLS, goes to gRPC's server or, if it opens with bulkMagic, becomes a bulk link.
func (g *Group) accept() {
	var srvTLS *tls.Config
	if g.opts.TLS != nil {
		srvTLS = g.opts.TLS.Clone()
		srvTLS.NextProtos = []string{"h2", bulkALPN}
	}
	for {
		conn, err := g.lis.Accept()
		if err != nil && !errors.Is(err, net.ErrClosed) && g.ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond) // out of file descriptors, say: try again
			continue
		}
		if err != nil {
			g.grpcLis.Close()
			return
		}
		go g.route(conn, srvTLS)
	}
}

func (g *Group) route(conn net.Conn, srvTLS *tls.Config) {
	conn.SetDeadline(time.Now().Add(g.opts.Timeout)) // for the handshake
	if srvTLS != nil {
		conn = tls.Server(conn, srvTLS)
	}
	head := make([]byte, len(bulkMagic))
	if _, err := io.ReadFull(conn, head); err != nil {
		conn.Close()
		return
	}
	if string(head) != bulkMagic {
		conn.SetDeadline(time.Time{})
		g.grpcLis.hand(&prefixed{Conn: conn, head: head})
		return
	}
	g.receiveBulk(conn)
}

// receiveBulk checks a bulk connection's introduction and queues its frames on the
// sender's peer until the link ends.
func (g *Group) receiveBulk(conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(g.ctx, func() { conn.Close() })
	defer stop()
	var hello [8]byte
	if _, err := io.ReadFull(conn, hello[:]); err != nil {
		return
	}
	r, n := int(binary.LittleEndian.Uint32(hello[:4])), binary.LittleEndian.Uint32(hello[4:])
	if n > 4096 {
		return
	}
	tok := make([]byte, n)
	if _, err := io.ReadFull(conn, tok); err != nil {
		return
	}
	if !g.tokenOK([]string{string(tok)}) {
		g.refuse(conn.RemoteAddr().String())
		conn.Write([]byte{0}) //nolint:errcheck // the refusal is a courtesy; hanging up is what counts
		return
	}
	if r < 0 || r >= g.world || r == g.rank {
		return
	}
	p := g.peers[r]
	p.inLinks.Add(1)
	conn.SetDeadline(time.Time{})
	if _, err := conn.Write([]byte{1}); err != nil {
		p.linkEnded(err)
		return
	}
	br := bufio.NewReaderSize(conn, 64<<10) // large frames bypass it, straight into theirs
	hot := make([]byte, 64<<10)             // a frame's values, a cache-sized piece at a time, to add
	for {
		var head [16]byte
		if _, err := io.ReadFull(br, head[:8]); err != nil {
			p.linkEnded(err) // even io.EOF: a link ends with bulkEnd, so the peer died
			return
		}
		n := binary.LittleEndian.Uint64(head[:8])
		if n == bulkEnd {
			p.linkEnded(nil)
			return
		}
		if n < 8 || n > maxFrame {
			p.linkEnded(fmt.Errorf("bad frame length %d", n))
			return
		}
		if _, err := io.ReadFull(br, head[8:]); err != nil {
			p.linkEnded(err)
			return
		}
		tag := getSeq(head[8:])
		var f *[]byte
		if z, ok := p.land.next(tag, int(n-8)); ok {
			if err := readInto(br, z, hot); err != nil {
				p.linkEnded(err)
				return
			}
			marker := make([]byte, 8) // too small for a pool
			putSeq(marker, tag|landedBit)
			f = &marker
		} else {
			f = frames.Get(int(n))
			copy(*f, head[8:])
			if _, err := io.ReadFull(br, (*f)[8:]); err != nil {
				frames.Put(f)
				p.linkEnded(err)
				return
			}
		}
		if p.in.push(mem.NewBuffer(f, frames)) != nil {
			frames.Put(f) // this rank is closing: nobody will read it
		}
	}
}

// readInto reads z's values from r into z.dst, added (through hot, a piece at a time,
// in the order decode adds) or copied.
func readInto(r io.Reader, z zone, hot []byte) error {
	dst := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(z.dst))), 4*len(z.dst))
	if !z.add {
		_, err := io.ReadFull(r, dst)
		return err
	}
	for k := 0; k < len(z.dst); {
		m := min(len(hot)/4, len(z.dst)-k)
		if _, err := io.ReadFull(r, hot[:4*m]); err != nil {
			return err
		}
		v, _ := codec{F32}.view(hot[:4*m])
		add(z.dst[k:k+m], v)
		k += m
	}
	return nil
}

// frames recycles bulk frames. Unlike gRPC's pools it does not clear what it hands out:
// a frame is always written over in full, and clearing would be one more pass over every
// byte.
var frames = &framePool{}

type framePool struct{ p sync.Pool }

// Get returns a buffer of n bytes, of undefined content.
func (fp *framePool) Get(n int) *[]byte {
	if b, ok := fp.p.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, max(n, 8+pieceBytes))
	return &b
}

func (fp *framePool) Put(b *[]byte) { fp.p.Put(b) }

// prefixed is a connection whose first bytes, already read, are read again first.
type prefixed struct {
	net.Conn
	head []byte
}

func (c *prefixed) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// connQueue is a net.Listener fed by accept: the gRPC server's.
type connQueue struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{conns: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (l *connQueue) hand(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connQueue) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connQueue) Addr() net.Addr { return l.addr }
