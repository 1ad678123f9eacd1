package conformance

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// A second instance of a service as a real separate OS process: the test
// binary runs itself again with HelperEnv set, and its
// TestConformanceHelper calls Helper, which runs a bus on the database the
// parent names. The child reports on stdout, one line per fact; it stops
// when its stdin closes.

// HelperEnv selects the helper mode of a child test process.
const HelperEnv = "EVENTBUS_CONFORMANCE_HELPER"

const (
	helperDialectEnv = "EVENTBUS_CONFORMANCE_HELPER_DIALECT"
	helperDSNEnv     = "EVENTBUS_CONFORMANCE_HELPER_DSN"
	helperServiceEnv = "EVENTBUS_CONFORMANCE_HELPER_SERVICE"
	// helperIntervalEnv, if set, is the child's RunInterval (a
	// time.ParseDuration string), with the wake-up options at their
	// defaults; otherwise the child polls as fastOptions do.
	helperIntervalEnv = "EVENTBUS_CONFORMANCE_HELPER_INTERVAL"
	// helperNoWakeEnv, if set, turns the child's wake-ups off (no LISTEN,
	// no change probe).
	helperNoWakeEnv = "EVENTBUS_CONFORMANCE_HELPER_NOWAKE"
)

// Helper runs in the child process: mode "standby" starts an instance of
// the service that prints "delivered <event id>" for each event it handles.
func Helper(t *testing.T) {
	mode := os.Getenv(HelperEnv)
	if mode == "partition" {
		partitionHelper(t)
		return
	}
	if mode != "standby" {
		t.Fatalf("unknown helper mode %q", mode)
	}
	db := dbtest.OpenDSN(t, os.Getenv(helperDialectEnv), os.Getenv(helperDSNEnv))
	opts := []eventbus.Option{eventbus.WithLeaseDuration(2 * time.Second), eventbus.WithConsumeConcurrent(4)}
	if iv := os.Getenv(helperIntervalEnv); iv != "" {
		d, err := time.ParseDuration(iv)
		must(t, err)
		opts = append(opts, eventbus.WithRunInterval(d))
	}
	if os.Getenv(helperNoWakeEnv) != "" {
		opts = append(opts, eventbus.WithListenNotify(false), eventbus.WithChangeProbeInterval(0))
	}
	bus := newBus(t, db, os.Getenv(helperServiceEnv), opts...)
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	must(t, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		say("delivered %s", evt.ID)
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Start(ctx) }()
	say("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	cancel()
	must(t, <-done)
	say("stopped")
}

// child is a helper process seen from the parent.
type child struct {
	stdin io.WriteCloser
	mu    sync.Mutex
	seen  map[string]time.Time // event id -> when the parent read its delivery
	first time.Time            // first delivery read
	ready chan struct{}
}

// startStandby starts a standby instance of service in a child process and
// waits until it runs. It is stopped when t ends.
func startStandby(t *testing.T, tdb *dbtest.Database, service string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestConformanceHelper$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), HelperEnv+"=standby", helperDialectEnv+"="+tdb.Dialect,
		helperDSNEnv+"="+tdb.DSN(), helperServiceEnv+"="+service)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	c := &child{seen: map[string]time.Time{}, ready: make(chan struct{})}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	must(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		var output []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "ready":
				close(c.ready)
			case strings.HasPrefix(line, "delivered "):
				now := time.Now()
				c.mu.Lock()
				if c.first.IsZero() {
					c.first = now
				}
				if _, ok := c.seen[line[len("delivered "):]]; !ok {
					c.seen[line[len("delivered "):]] = now
				}
				c.mu.Unlock()
			default:
				output = append(output, line)
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper process: %v\n%s", err, strings.Join(output, "\n"))
		}
	}()
	t.Cleanup(func() {
		_ = c.stdin.Close()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("helper process did not stop within 30s of its stdin closing")
		}
	})
	select {
	case <-c.ready:
	case <-exited:
		t.Fatal("helper process exited before it was ready (is TestConformanceHelper in the test binary?)")
	case <-time.After(60 * time.Second):
		t.Fatal("helper process not ready after 60s")
	}
	return c
}

// delivered returns when the child's delivery of id was read (zero if not yet).
func (c *child) delivered(id string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[id]
}

// firstDelivery returns when the child's first delivery was read (zero if none).
func (c *child) firstDelivery() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

// count returns how many distinct events the child delivered.
func (c *child) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
