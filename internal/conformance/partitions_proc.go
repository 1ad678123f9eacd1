package conformance

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// Instances of a partitioned service as real OS processes. The child
// prints one line per handler call: "h <event id> <sender> <n> <start ns>
// <end ns>" (wall clock, comparable between processes of one machine).

const (
	helperPartsEnv = "EVENTBUS_CONFORMANCE_HELPER_PARTITIONS"
	helperIDEnv    = "EVENTBUS_CONFORMANCE_HELPER_INSTANCE"
	helperDelayEnv = "EVENTBUS_CONFORMANCE_HELPER_DELAY"
)

// partLease is the children's lease: short, so that a death is seen
// within a test, long enough for a loaded 2-core machine.
const partLease = 1500 * time.Millisecond

func partitionHelper(t *testing.T) {
	db := dbtest.OpenDSN(t, os.Getenv(helperDialectEnv), os.Getenv(helperDSNEnv))
	n, err := strconv.Atoi(os.Getenv(helperPartsEnv))
	must(t, err)
	delay, err := time.ParseDuration(os.Getenv(helperDelayEnv))
	must(t, err)
	bus := newBus(t, db, os.Getenv(helperServiceEnv), eventbus.WithLeaseDuration(partLease), eventbus.WithConsumeConcurrent(8),
		eventbus.WithLimitPerRun(100), eventbus.WithPartitions(n), eventbus.WithInstanceID(os.Getenv(helperIDEnv)),
		eventbus.WithShutdownGrace(5*time.Second))
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		_ = out.Flush()
	}
	must(t, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		begin := time.Now()
		time.Sleep(delay)
		say("h %s %s %d %d %d", evt.ID, evt.Sender, decodeN(t, evt), begin.UnixNano(), time.Now().UnixNano())
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

// handling is one handler call seen by the parent.
type handling struct {
	id, sender, by string
	n              int
	start, end     time.Time
}

// calls collects the handler calls of every child.
type calls struct {
	mu  sync.Mutex
	all []handling
	ids map[string]int // event id -> calls
}

func newCalls() *calls { return &calls{ids: map[string]int{}} }

func (c *calls) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

func (c *calls) by(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := 0
	for _, h := range c.all {
		if h.by == name {
			k++
		}
	}
	return k
}

// partChild is one instance process.
type partChild struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	exited  chan struct{}
	stopped bool
}

// startPartChild starts instance name of service (n partitions, each
// call taking delay) and waits until it runs.
func startPartChild(t *testing.T, tdb *dbtest.Database, service, name string, n int, delay time.Duration, into *calls) *partChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestConformanceHelper$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), HelperEnv+"=partition", helperDialectEnv+"="+tdb.Dialect, helperDSNEnv+"="+tdb.DSN(),
		helperServiceEnv+"="+service, helperPartsEnv+"="+strconv.Itoa(n), helperIDEnv+"="+name, helperDelayEnv+"="+delay.String())
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	c := &partChild{name: name, cmd: cmd, exited: make(chan struct{})}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	must(t, cmd.Start())
	ready := make(chan struct{})
	go func() {
		defer close(c.exited)
		sc := bufio.NewScanner(stdout)
		var output []string
		for sc.Scan() {
			line := sc.Text()
			f := strings.Fields(line)
			switch {
			case line == "ready":
				close(ready)
			case len(f) == 6 && f[0] == "h":
				k, _ := strconv.Atoi(f[3])
				s, _ := strconv.ParseInt(f[4], 10, 64)
				e, _ := strconv.ParseInt(f[5], 10, 64)
				into.mu.Lock()
				into.all = append(into.all, handling{id: f[1], sender: f[2], by: name, n: k, start: time.Unix(0, s), end: time.Unix(0, e)})
				into.ids[f[1]]++
				into.mu.Unlock()
			default:
				output = append(output, line)
			}
		}
		err := cmd.Wait()
		if err != nil && !c.stopped {
			t.Errorf("instance %s: %v\n%s", name, err, strings.Join(output, "\n"))
		}
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		c.stop(t)
	})
	select {
	case <-ready:
	case <-c.exited:
		t.Fatalf("instance %s exited before it was ready", name)
	case <-time.After(60 * time.Second):
		t.Fatalf("instance %s not ready after 60s", name)
	}
	return c
}

// stop stops the child gracefully and waits for it.
func (c *partChild) stop(t *testing.T) {
	_ = c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.stopped = true
		_ = c.cmd.Process.Kill()
		<-c.exited
		t.Errorf("instance %s did not stop within 30s", c.name)
	}
}

// kill ends the child with SIGKILL.
func (c *partChild) kill(t *testing.T) {
	c.stopped = true
	must(t, c.cmd.Process.Kill())
	<-c.exited
}

func (c *partChild) signal(t *testing.T, sig syscall.Signal) {
	must(t, syscall.Kill(c.cmd.Process.Pid, sig))
}
