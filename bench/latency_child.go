package main

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
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
)

// The other-process consumer of the latency scenario: this binary with
// -child wake runs a bus of service "remote" with RunInterval -child-poll
// and the wake-up options at their defaults, prints "ready" once it runs,
// then "d <event id> <UnixNano>" for each event handed to it, and stops
// when its stdin closes. Both processes read the same machine's clock.

const wakeService = "remote"

func runWakeChild(ctx context.Context, cfg *config) error {
	t, err := newTarget(ctx, cfg)
	if err != nil {
		return err
	}
	defer t.close()
	bus, err := newLibBus(t, wakeService, eventbus.WithRunInterval(cfg.childPoll))
	if err != nil {
		return err
	}
	defer bus.close()
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		_ = out.Flush()
	}
	if err := bus.RegisterEventHandler(func(_ context.Context, evt *ddd.DomainEvent) error {
		say("d %s %d", evt.ID, time.Now().UnixNano())
		return nil
	}); err != nil {
		return err
	}
	stop := bus.start(ctx)
	time.Sleep(500 * time.Millisecond) // it takes its lease
	say("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	stop()
	return nil
}

// wakeChild is the other-process consumer seen from the harness.
type wakeChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan error
}

// spawnWakeChild starts the consumer child polling every poll, records
// what it is handed in tl, and returns once it is ready.
func spawnWakeChild(ctx context.Context, t *target, cfg *config, poll time.Duration, tl *tally) (*wakeChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-child", "wake", "-child-poll", poll.String(), "-db", cfg.db, "-dbname", cfg.dbName,
		"-mysql-dsn", cfg.mysqlDSN, "-postgres-dsn", cfg.pgDSN, "-lib-notify=" + strconv.FormatBool(cfg.libNotify)}
	if t.sqlitePath != "" {
		args = append(args, "-sqlite-dir", dirOf(t.sqlitePath))
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c := &wakeChild{cmd: cmd, done: make(chan error, 1)}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				close(ready)
				continue
			}
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == "d" {
				if ns, err := strconv.ParseInt(f[2], 10, 64); err == nil {
					tl.deliverAt(f[1], ns)
				}
			}
		}
		c.done <- cmd.Wait()
	}()
	select {
	case <-ready:
		return c, nil
	case err := <-c.done:
		return nil, fmt.Errorf("wake child exited before it was ready: %v", err)
	case <-time.After(time.Minute):
		c.close()
		return nil, fmt.Errorf("wake child not ready after a minute")
	}
}

// close stops the child and waits for it.
func (c *wakeChild) close() {
	_ = c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
