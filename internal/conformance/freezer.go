//go:build linux

package conformance

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// A freezer stops its own process (SIGSTOP) right after it has sent a
// statement of the sequencer, when the parent test asked for it by creating
// the flag file: the process is then frozen at the worst moment for a
// sequencer that holds its lock across round trips. Sequencer statements
// are those that name a sequencer table or routine ("sequence").
type freezer struct{ flag string }

// after freezes the process if stmt is a sequencer statement and a freeze
// is asked. state, if not nil, describes the connection (SQLite); it is
// written with the goroutines' stacks to the flag's ".state" file, which
// the parent shows if the test fails.
func (f *freezer) after(stmt []byte, state func() string) {
	if !bytes.Contains(stmt, []byte("sequence")) {
		return
	}
	if os.Remove(f.flag) != nil {
		return // no freeze asked, or another connection took it
	}
	fmt.Fprintf(os.Stderr, "freezing after: %.300s\n", stmt) // shown if the test fails
	var b bytes.Buffer
	if state != nil {
		b.WriteString(state())
	}
	stacks := make([]byte, 1<<20)
	b.Write(stacks[:runtime.Stack(stacks, true)])
	_ = os.WriteFile(f.flag+".state", b.Bytes(), 0o600)
	stopThisThread()
}

// stopThisThread stops the process by a SIGSTOP sent to the calling
// thread, which stops before it runs one more instruction of the process.
// A SIGSTOP sent to the process (kill) is taken by a thread of the
// kernel's choosing, usually the main one: until that thread is scheduled,
// which on a loaded machine takes milliseconds, the caller runs on. It
// then returned its connection and the child began its next write, and
// froze holding SQLite's write lock (seen in /proc/locks: byte 120 of the
// -shm file, while the connection had reported no transaction).
func stopThisThread() {
	runtime.LockOSThread() // the thread id stays the caller's
	defer runtime.UnlockOSThread()
	_ = syscall.Tgkill(os.Getpid(), syscall.Gettid(), syscall.SIGSTOP)
}
