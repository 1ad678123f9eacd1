//go:build linux

package conformance

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
)

// Diagnostics for SequencerFrozenProcessDoesNotStopOthers on SQLite: when
// the parent cannot write while the child is frozen, who holds what.

// fileLocks returns the lines of /proc/locks on the database file, its WAL
// and its shared memory, each named. SQLite's WAL locks are bytes of the
// -shm file: 120 the write lock, 121 the checkpointer's, 122 recovery's,
// 123-127 the readers' marks, 128 the "dead man switch".
func fileLocks(dbFile string) string {
	inodes := map[string]string{}
	for _, f := range []string{dbFile, dbFile + "-wal", dbFile + "-shm"} {
		var st syscall.Stat_t
		if syscall.Stat(f, &st) == nil {
			inodes[fmt.Sprintf(":%d", st.Ino)] = f[strings.LastIndexByte(f, '/')+1:]
		}
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return "read /proc/locks: " + err.Error()
	}
	var out strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		// "1: POSIX ADVISORY WRITE pid maj:min:inode start end"; blocked
		// waiters have a "->" field first.
		if len(fields) > 1 && fields[1] == "->" {
			fields = fields[1:]
		}
		if len(fields) < 8 {
			continue
		}
		dev := fields[5]
		if i := strings.LastIndexByte(dev, ':'); i >= 0 {
			if name, ok := inodes[dev[i:]]; ok {
				fmt.Fprintf(&out, "%s: %s\n", name, line)
			}
		}
	}
	return out.String()
}

// dispatchWatched dispatches evt; on SQLite it samples the file locks
// meanwhile, and on failure logs them, the parent's stacks and the frozen
// child's (written by its freezer).
func dispatchWatched(t testing.TB, bus *eventbus.EventBus, evt *ddd.DomainEvent, dialect string, c frozenChild, child int) error {
	t.Helper()
	if dialect != "sqlite" {
		return bus.Dispatch(context.Background(), evt)
	}
	samples := map[string]int{}
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			samples[fileLocks(c.DSN)]++
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	started := time.Now()
	err := bus.Dispatch(context.Background(), evt)
	close(done)
	<-sampled
	if err == nil {
		return nil
	}
	t.Logf("dispatch failed after %s; parent pid %d, child pid %d (stopped: %v)", time.Since(started), os.Getpid(), child, processStopped(t, child))
	t.Logf("file locks now:\n%s", fileLocks(c.DSN))
	for locks, n := range samples {
		t.Logf("file locks seen %d times during the dispatch:\n%s", n, locks)
	}
	t.Logf("child's open files:\n%s", openFiles(child))
	if b, rerr := os.ReadFile(c.Flag + ".state"); rerr == nil {
		t.Logf("child's connection and stacks when it froze itself:\n%s", b)
	}
	buf := make([]byte, 1<<20)
	t.Logf("parent stacks:\n%s", buf[:runtime.Stack(buf, true)])
	return err
}

// openFiles lists the files process pid has open, one a line.
func openFiles(pid int) string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range ents {
		l, _ := os.Readlink(dir + "/" + e.Name())
		fmt.Fprintf(&b, "%s -> %s\n", e.Name(), l)
	}
	return b.String()
}
