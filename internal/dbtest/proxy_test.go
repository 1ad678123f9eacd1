package dbtest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// serve runs a test server on 127.0.0.1 that hands every connection to
// handle, until t ends; it returns the server's address.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echoServer answers every line with the same line, until t ends.
func echoServer(t *testing.T) string {
	return serve(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

type lineConn struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{Conn: c, r: bufio.NewReader(c)}
}

// roundTrip sends line and returns what comes back within wait.
func (c *lineConn) roundTrip(line string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	return c.readLine(wait)
}

func (c *lineConn) readLine(wait time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	s, err := c.r.ReadString('\n')
	if len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s, err
}

func TestProxyForwards(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	for i := range 3 {
		c := dial(t, p.Addr())
		if got, err := c.roundTrip("hello", 5*time.Second); err != nil || got != "hello" {
			t.Fatalf("conn %d: got %q, %v; want hello", i, got, err)
		}
	}
	if n := p.Accepted(); n != 3 {
		t.Fatalf("Accepted() = %d, want 3", n)
	}
}

func TestProxyPauseHoldsBytesAndKeepsConnections(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	if got, err := c.roundTrip("before", 5*time.Second); err != nil || got != "before" {
		t.Fatalf("before pause: %q, %v", got, err)
	}
	p.Pause()
	// Nothing comes back while paused: the read times out (a bounded
	// check), but the connection is not closed.
	_, err := c.roundTrip("during", 300*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while paused: %v, want a deadline error", err)
	}
	// A connection opened while paused is accepted but stalls too.
	c2 := dial(t, p.Addr())
	if _, err := c2.roundTrip("new", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection while paused: %v, want a deadline error", err)
	}
	p.Resume()
	// The held bytes arrive, in order, on the same connections.
	if got, err := c.readLine(5 * time.Second); err != nil || got != "during" {
		t.Fatalf("after resume: %q, %v; want during", got, err)
	}
	if got, err := c2.readLine(5 * time.Second); err != nil || got != "new" {
		t.Fatalf("new connection after resume: %q, %v; want new", got, err)
	}
	if got, err := c.roundTrip("after", 5*time.Second); err != nil || got != "after" {
		t.Fatalf("after resume: %q, %v", got, err)
	}
}

func TestProxyCutClosesAndRefusesUntilRestore(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	if got, err := c.roundTrip("x", 5*time.Second); err != nil || got != "x" {
		t.Fatalf("before cut: %q, %v", got, err)
	}
	p.Cut()
	// The open connection is closed: reading ends with EOF (or a reset).
	if _, err := c.readLine(5 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after cut: %v, want the connection closed", err)
	}
	if nc, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second); err == nil {
		nc.Close()
		t.Fatal("dial after cut succeeded, want connection refused")
	}
	// Pause and Resume while cut do not reopen anything.
	p.Pause()
	p.Resume()
	if nc, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second); err == nil {
		nc.Close()
		t.Fatal("dial after cut and resume succeeded, want connection refused")
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	c2 := dial(t, p.Addr())
	if got, err := c2.roundTrip("back", 5*time.Second); err != nil || got != "back" {
		t.Fatalf("after restore: %q, %v", got, err)
	}
}

func TestProxyCutWhilePausedAndClose(t *testing.T) {
	p, err := StartProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	p.Pause()
	if _, err := c.Write([]byte("stuck\n")); err != nil {
		t.Fatal(err)
	}
	// Cut releases the held pipe: the connection closes instead of hanging.
	p.Cut()
	if _, err := c.readLine(5 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after cut while paused: %v, want the connection closed", err)
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	p.Resume()
	c2 := dial(t, p.Addr())
	if got, err := c2.roundTrip("ok", 5*time.Second); err != nil || got != "ok" {
		t.Fatalf("after restore: %q, %v", got, err)
	}
	// Close returns (it waits for every goroutine) and is idempotent.
	p.Close()
	p.Close()
	if err := p.Restore(); err == nil {
		t.Fatal("Restore after Close succeeded")
	}
	if _, err := c2.readLine(5 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after close: %v, want the connection closed", err)
	}
}

// recordingServer echoes every line and sends what it received, line by
// line, on the returned channel; it closes a connection at end of input.
func recordingServer(t *testing.T) (string, <-chan string) {
	got := make(chan string, 100)
	addr := serve(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			got <- line[:len(line)-1]
			if _, err := c.Write([]byte(line)); err != nil {
				return
			}
		}
	})
	return addr, got
}

func TestProxyLoseReplyTo(t *testing.T) {
	addr, got := recordingServer(t)
	p := NewProxy(t, addr)
	c := dial(t, p.Addr())
	if s, err := c.roundTrip("insert", 5*time.Second); err != nil || s != "insert" {
		t.Fatalf("before the fault: %q, %v", s, err)
	}
	fired := p.LoseReplyTo("commit")
	// The server receives the packet, the client never sees the reply and
	// its connection closes.
	if s, err := c.roundTrip("COMMIT", 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("reply to COMMIT: %q, %v; want the connection closed without it", s, err)
	}
	select {
	case <-fired:
	default:
		t.Fatal("the fault did not report firing")
	}
	for _, want := range []string{"insert", "COMMIT"} {
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("server received %q, want %q", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("server did not receive %q", want)
		}
	}
	// One-shot: a new connection carries COMMIT both ways.
	c2 := dial(t, p.Addr())
	if s, err := c2.roundTrip("commit", 5*time.Second); err != nil || s != "commit" {
		t.Fatalf("after the fault: %q, %v", s, err)
	}
}

func TestProxyDropPacket(t *testing.T) {
	addr, got := recordingServer(t)
	p := NewProxy(t, addr)
	c := dial(t, p.Addr())
	fired := p.DropPacket("commit")
	if s, err := c.roundTrip("begin", 5*time.Second); err != nil || s != "begin" {
		t.Fatalf("before the fault: %q, %v", s, err)
	}
	if s, err := c.roundTrip("commit", 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("reply to commit: %q, %v; want the connection closed", s, err)
	}
	<-fired
	if s := <-got; s != "begin" {
		t.Fatalf("server received %q, want begin", s)
	}
	// The dropped packet never arrives; a new connection works.
	c2 := dial(t, p.Addr())
	if s, err := c2.roundTrip("next", 5*time.Second); err != nil || s != "next" {
		t.Fatalf("after the fault: %q, %v", s, err)
	}
	if s := <-got; s != "next" {
		t.Fatalf("server received %q after the dropped packet, want next", s)
	}
}

// TestProxyMarkerIsAWord: a fault armed for "commit" fires on COMMIT, not
// on a statement that merely contains the letters (READ COMMITTED).
func TestProxyMarkerIsAWord(t *testing.T) {
	for chunk, want := range map[string]bool{
		"commit": true, "COMMIT": true, "Q\x00\x00\x00\x0bcommit\x00": true, "\x03COMMIT": true,
		"begin isolation level read committed": false, "SELECT committed_at": false, "recommit": false, "commit_ts": false,
	} {
		if got := containsWord([]byte(strings.ToLower(chunk)), []byte("commit")); got != want {
			t.Errorf("containsWord(%q, commit) = %v, want %v", chunk, got, want)
		}
	}
}
