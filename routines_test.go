package eventbus_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	ebsqlite "github.com/dddbus/eventbus/sqlite"
)

type stuckEvent struct{ N int }

func (stuckEvent) EventType() string { return "test.Stuck" }

type slowEvent struct{ N int }

func (slowEvent) EventType() string { return "test.Slow" }

// Every goroutine the bus starts has ended when Start returns, except user
// code it stopped waiting for: a handler call abandoned past HandlerTimeout
// and a Tx checker call past TxCheckCallTimeout (both ignore their
// contexts here). The stop comes while a batch runs (workers, heartbeat),
// with a pending transaction (the checker's loop) and the cleaner's cron.
// Not parallel: it reads every goroutine's stack.
func TestNoGoroutineOutlivesStart(t *testing.T) {
	db, err := ebsqlite.Open(filepath.Join(t.TempDir(), "routines.db"))
	if err != nil {
		t.Fatal(err)
	}
	bus, err := eventbus.NewEventBus("svc", db,
		eventbus.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		eventbus.WithStartPosition(eventbus.StartFromEarliest),
		eventbus.WithRunInterval(20*time.Millisecond),
		eventbus.WithLeaseDuration(600*time.Millisecond), // heartbeat renewals every 200ms of a batch
		eventbus.WithHandlerTimeout(100*time.Millisecond),
		eventbus.WithShutdownGrace(100*time.Millisecond),
		eventbus.WithCleanCron("@every 1s"),
		eventbus.WithTxCheckTimeout(50*time.Millisecond),
		eventbus.WithTxCheckCallTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{}) // ends the calls that ignore their contexts
	userCode := make(chan struct{}, 4)
	stuckIn, checkerIn, slowIn := make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{}, 16)
	router := ddd.NewRouter()
	must(t, ddd.On(router, func(ctx context.Context, _ *ddd.DomainEvent, _ stuckEvent) error {
		stuckIn <- struct{}{}
		<-release
		userCode <- struct{}{}
		return nil
	}))
	must(t, ddd.On(router, func(ctx context.Context, _ *ddd.DomainEvent, _ slowEvent) error {
		slowIn <- struct{}{}
		<-ctx.Done() // returns when the stop's grace cancels it
		return ctx.Err()
	}))
	must(t, bus.RegisterEventHandler(router.HandleEvent))
	must(t, bus.RegisterEventTxChecker(func(context.Context, []*ddd.DomainEvent) (ddd.TxStatus, error) {
		select {
		case checkerIn <- struct{}{}:
		default:
		}
		<-release
		userCode <- struct{}{}
		return ddd.TxUnknown, nil
	}))
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	before := goroutineIDs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- bus.Start(ctx) }()

	dispatch := func(sender string, v any) {
		t.Helper()
		evt, err := ddd.NewDomainEvent(sender, v)
		must(t, err)
		must(t, bus.Dispatch(context.Background(), evt))
	}
	dispatch("stuck-sender", stuckEvent{1})
	evt, err := ddd.NewDomainEvent("tx-sender", slowEvent{0}, ddd.WithSendType(ddd.SendTransaction))
	must(t, err)
	if _, err := bus.DispatchBegin(context.Background(), evt); err != nil { // left pending: the checker is asked
		t.Fatal(err)
	}
	waitFor(t, "the stuck handler call", stuckIn)
	waitFor(t, "the Tx checker call", checkerIn)
	waitUntil(t, "the stuck call abandoned", func() bool { return bus.Stats().Abandoned > 0 })
	for i := range 4 {
		dispatch("slow-sender-"+string(rune('a'+i)), slowEvent{i})
	}
	waitFor(t, "a slow handler call", slowIn)

	cancel()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return within 30s of cancel")
	}
	// Checked at once, with no grace: a goroutine Start waited for has left
	// this package's functions before Start returned.
	left, abandoned := busGoroutines(before)
	if abandoned == 0 {
		t.Fatal("no abandoned user call seen in the goroutine dump: the filter cannot work")
	}
	if len(left) > 0 {
		t.Fatalf("%d goroutines of the bus outlived Start:\n\n%s", len(left), strings.Join(left, "\n\n"))
	}
	close(release)
	for range 2 { // the stuck handler and at least one checker call return
		waitFor(t, "an abandoned call to return", userCode)
	}
}

// busGoroutines returns the stacks of goroutines not in before that run
// functions of package eventbus, apart from user calls the bus abandoned
// (counted in abandoned).
func busGoroutines(before map[string]bool) (left []string, abandoned int) {
	for _, g := range goroutineStacks() {
		id, frames := g[0], g[1:]
		if before[id] || !inPackage(frames) {
			continue
		}
		stack := strings.Join(g, "\n")
		switch {
		case strings.Contains(stack, "\ngithub.com/dddbus/eventbus.run("), // a handler call
			strings.Contains(stack, "\ngithub.com/dddbus/eventbus.(*EventBus).askChecker.func"): // a Tx checker call
			abandoned++
		case strings.Contains(stack, "github.com/dddbus/eventbus.(*stmtSet)."): // the pool's statement cache
		default:
			left = append(left, stack)
		}
	}
	return left, abandoned
}

// inPackage reports whether a frame (not the "created by" line) is a
// function of package eventbus itself.
func inPackage(frames []string) bool {
	for _, f := range frames {
		if strings.HasPrefix(f, "github.com/dddbus/eventbus.") {
			return true
		}
	}
	return false
}

func goroutineIDs() map[string]bool {
	ids := map[string]bool{}
	for _, g := range goroutineStacks() {
		ids[g[0]] = true
	}
	return ids
}

// goroutineStacks returns every goroutine as its header ("goroutine N")
// followed by its frames' function lines.
func goroutineStacks() [][]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out [][]string
	for _, block := range bytes.Split(buf, []byte("\n\n")) {
		lines := strings.Split(string(block), "\n")
		head, _, _ := strings.Cut(lines[0], " [")
		g := []string{head}
		for _, l := range lines[1:] {
			if l != "" && !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, "created by ") {
				g = append(g, l)
			}
		}
		out = append(out, g)
	}
	return out
}

func waitFor(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s within 30s", what)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
