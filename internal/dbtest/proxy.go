package dbtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy between a database client and its server, for
// simulating failures: Pause stalls every connection (as a frozen process or
// a black-holed network would), Cut closes them all and refuses new ones (the
// server went away), and LoseReplyTo / DropPacket break the one connection
// that sends a given statement (a COMMIT whose reply is lost, or that never
// arrives). It listens on 127.0.0.1 only.
type Proxy struct {
	target string
	addr   string // the listening address, kept across Cut and Restore

	mu      sync.Mutex
	ln      net.Listener // nil while cut
	cond    *sync.Cond   // signalled when paused or closed changes
	paused  bool
	cut     bool
	closed  bool
	conns   map[net.Conn]struct{}
	accepts int
	fault   *fault // armed by LoseReplyTo or DropPacket; nil once fired
	wg      sync.WaitGroup
}

// fault breaks the connection whose client sends a packet containing marker.
type fault struct {
	marker  []byte // lower case
	forward bool   // forward the packet (and lose the reply) or drop it
	fired   chan struct{}
}

// NewProxy starts a proxy to target (host:port), stopped when t ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := StartProxy(target)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// StartProxy starts a proxy to target; Close stops it.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.acceptLoop(ln)
	return p, nil
}

// Addr is the address clients dial instead of the server's.
func (p *Proxy) Addr() string { return p.addr }

// Pause stops forwarding bytes in both directions; connections stay open
// and new ones are accepted but stall too.
func (p *Proxy) Pause() { p.set(func() { p.paused = true }) }

// Resume forwards again, starting with what was held back.
func (p *Proxy) Resume() { p.set(func() { p.paused = false }) }

// Cut closes every connection and stops listening, so new connections are
// refused, until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.dropLocked()
}

// dropLocked, called with p.mu held, takes the listener and every connection, unlocks p.mu
// and closes them after unlocking.
func (p *Proxy) dropLocked() {
	ln := p.ln
	p.ln = nil
	conns := p.takeConnsLocked()
	p.cond.Broadcast()
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// LoseReplyTo arms a one-shot fault: the next client packet whose text
// contains marker as a word (case-insensitive, e.g. "commit", which
// "READ COMMITTED" does not match) is forwarded to the
// server, and the server's reply is thrown away. The proxy then ends its
// side of that connection to the server (after the packet, so the server
// reads the packet first), waits until the server has answered and closed
// (at most 10s), and only then closes the client's connection. So when the
// client sees its connection fail, the server has finished the statement:
// a COMMIT has committed, and only its reply was lost. The returned channel
// is closed when the fault fires. Other connections are not touched.
func (p *Proxy) LoseReplyTo(marker string) <-chan struct{} { return p.arm(marker, true) }

// DropPacket arms a one-shot fault: the next client packet whose text
// contains marker as a word (case-insensitive) is not forwarded, and that connection
// is closed at once on both sides. The server sees its client go away in
// the middle of whatever it was doing (a transaction rolls back). The
// returned channel is closed when the fault fires.
func (p *Proxy) DropPacket(marker string) <-chan struct{} { return p.arm(marker, false) }

func (p *Proxy) arm(marker string, forward bool) <-chan struct{} {
	f := &fault{marker: bytes.ToLower([]byte(marker)), forward: forward, fired: make(chan struct{})}
	p.mu.Lock()
	p.fault = f
	p.mu.Unlock()
	return f.fired
}

// takeFault returns the armed fault if chunk matches it, and disarms it.
func (p *Proxy) takeFault(chunk []byte) *fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.fault
	if f == nil || !containsWord(bytes.ToLower(chunk), f.marker) {
		return nil
	}
	p.fault = nil
	return f
}

// containsWord reports whether word occurs in b with no letter, digit or
// underscore on either side: a fault armed for "commit" must not fire on a
// "BEGIN ISOLATION LEVEL READ COMMITTED" another goroutine sends meanwhile.
func containsWord(b, word []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], word)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(word)
		if (start == 0 || !wordByte(b[start-1])) && (end == len(b) || !wordByte(b[end])) {
			return true
		}
		i = start + 1
	}
}

func wordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// Restore listens again on the same address after Cut.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy: closed")
	}
	if p.ln == nil {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("proxy: listen again on %s: %w", p.addr, err)
		}
		p.ln = ln
		p.wg.Add(1)
		go p.acceptLoop(ln)
	}
	p.cut = false
	p.cond.Broadcast()
	return nil
}

// Accepted is the number of client connections accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepts
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.dropLocked()
	p.wg.Wait()
}

func (p *Proxy) set(f func()) {
	p.mu.Lock()
	f()
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *Proxy) takeConnsLocked() []net.Conn {
	out := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		out = append(out, c)
		delete(p.conns, c)
	}
	return out
}

// track registers c; false if the proxy is cut or closed (c is then closed).
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) acceptLoop(ln net.Listener) {
	defer p.wg.Done()
	for {
		client, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. too many open files: try again
			continue
		}
		p.mu.Lock()
		p.accepts++
		p.mu.Unlock()
		if !p.track(client) {
			continue // cut meanwhile: track closed it
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	var dropReplies atomic.Bool // set by LoseReplyTo's fault
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client, &dropReplies, true) }()
	go func() { defer wg.Done(); p.pipe(client, server, &dropReplies, false) }()
	wg.Wait()
}

// pipe copies src to dst, holding each chunk while the proxy is paused.
// When either side fails both are closed, so the other pipe ends too.
// Client packets (fromClient) are checked against an armed fault; server
// chunks are thrown away once dropReplies is set.
func (p *Proxy) pipe(dst, src net.Conn, dropReplies *atomic.Bool, fromClient bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitForwarding() {
				return
			}
			if fromClient {
				if f := p.takeFault(buf[:n]); f != nil {
					p.fire(f, dst, buf[:n], dropReplies)
					return
				}
			}
			if !dropReplies.Load() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return // EOF or closed: the deferred closes end the other direction too
		}
	}
}

// fire applies fault f to the client packet pkt bound for server. For a
// lost reply it forwards pkt, half-closes the server connection (the server
// reads pkt, then end of input) and waits for the other pipe, which throws
// the reply away, to see the server close; the deferred closes of both
// pipes then close the client's connection.
// f.fired is closed before the client can see its connection fail.
func (p *Proxy) fire(f *fault, server net.Conn, pkt []byte, dropReplies *atomic.Bool) {
	if !f.forward {
		close(f.fired)
		return // the caller's deferred closes cut both sides
	}
	dropReplies.Store(true)
	_, err := server.Write(pkt)
	close(f.fired)
	if err != nil {
		return
	}
	if tc, ok := server.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 32<<10)
	for {
		if _, err := server.Read(buf); err != nil {
			return
		}
	}
}

// waitForwarding blocks while paused; false once the proxy is cut or closed.
func (p *Proxy) waitForwarding() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.paused && !p.cut && !p.closed {
		p.cond.Wait()
	}
	return !p.cut && !p.closed
}
