//go:build unix

package relay_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// natsBinary is the nats-server the restart test runs privately.
const natsBinary = "/usr/sbin/nats-server"

// natsServer is a private nats-server with JetStream, on a port and store
// directory of its own, killed when the test ends. It never touches the
// shared server.
type natsServer struct {
	addr string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func privateNATS(t *testing.T) *natsServer {
	t.Helper()
	if _, err := os.Stat(natsBinary); err != nil {
		t.Skipf("skipping: no %s (install nats-server)", natsBinary)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &natsServer{addr: addr, dir: t.TempDir()}
	s.start(t)
	t.Cleanup(func() { s.kill(t) })
	return s
}

func (s *natsServer) url() string { return "nats://" + s.addr }

// start runs the server and waits until it accepts connections.
func (s *natsServer) start(t *testing.T) {
	t.Helper()
	_, port, _ := net.SplitHostPort(s.addr)
	log, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	s.cmd = exec.Command(natsBinary, "-a", "127.0.0.1", "-p", port, "-js", "-sd", filepath.Join(s.dir, "store"))
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	waitFor(t, 30*time.Second, "the private nats-server to listen", func() bool {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// kill stops the server at once (SIGKILL), as in a crash, and waits for it.
func (s *natsServer) kill(t *testing.T) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}
