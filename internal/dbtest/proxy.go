package dbtest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy between a database client and its server, for
// simulating failures: Pause stalls every connection (as a frozen process or
// a black-holed network would), Cut closes them all and refuses new ones (the
// server went away). It listens on 127.0.0.1 only.
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
	wg      sync.WaitGroup
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
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client) }()
	go func() { defer wg.Done(); p.pipe(client, server) }()
	wg.Wait()
}

// pipe copies src to dst, holding each chunk while the proxy is paused.
// When either side fails both are closed, so the other pipe ends too.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitForwarding() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or closed: the deferred closes end the other direction too
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
