package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// With HandlerTimeout 0 a call is never abandoned: one still running after
// the set-aside delay (a minute; shortened here) is set aside. Its event
// waits in the retry store, the rest of the batch and later batches go on,
// its sender gets nothing else until it returns, and its result is
// recorded when it does: a success is not run again, a failure is retried.
func TestSetAsideWithoutTimeout(t *testing.T) {
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			t.Parallel()
			testSetAside(t, target.New(t))
		})
	}
}

type setAsideLog struct {
	mu       sync.Mutex
	calls    map[string]int
	handled  []string // "sender:N" in the order handled
	running  map[string]bool
	overlaps int
	block    map[string]chan error // event id -> its first call returns what arrives here
}

func (l *setAsideLog) handle(ctx context.Context, evt *ddd.DomainEvent) error {
	l.mu.Lock()
	l.calls[evt.ID]++
	if l.running[evt.Sender] {
		l.overlaps++
	}
	l.running[evt.Sender] = true
	var wait chan error
	if l.calls[evt.ID] == 1 {
		wait = l.block[evt.ID]
	}
	l.mu.Unlock()
	var err error
	if wait != nil {
		err = <-wait // ignores ctx (there is no timeout anyway)
	}
	var p payloadN
	if derr := evt.Decode(&p); derr != nil {
		err = derr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running[evt.Sender] = false
	if err == nil {
		l.handled = append(l.handled, fmt.Sprintf("%s:%d", evt.Sender, p.N))
	}
	return err
}

func (l *setAsideLog) snapshot() (calls map[string]int, handled []string, overlaps int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	calls = map[string]int{}
	for k, v := range l.calls {
		calls[k] = v
	}
	return calls, append([]string(nil), l.handled...), l.overlaps
}

func testSetAside(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus, err := eventbus.NewEventBus("aside", db, eventbus.WithHandlerTimeout(0), eventbus.WithLimitPerRun(10),
		eventbus.WithConsumeConcurrent(4), eventbus.WithRunInterval(20*time.Millisecond), eventbus.WithCleanCron(""),
		eventbus.WithStartPosition(eventbus.StartFromEarliest), eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 2}),
		eventbus.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	must(t, err)
	eventbus.ShortenSetAside(bus, 300*time.Millisecond)
	ev := func(sender string, n int) *ddd.DomainEvent {
		evt, err := ddd.NewDomainEvent(sender, payloadN{N: n})
		must(t, err)
		return evt
	}
	s0, f0 := ev("S", 0), ev("F", 0) // S's first call succeeds late, F's fails late
	log := &setAsideLog{calls: map[string]int{}, running: map[string]bool{},
		block: map[string]chan error{s0.ID: make(chan error, 1), f0.ID: make(chan error, 1)}}
	t.Cleanup(func() { log.block[s0.ID] <- nil; log.block[f0.ID] <- nil })
	must(t, bus.RegisterEventHandler(log.handle))
	evts := []*ddd.DomainEvent{s0, f0, ev("S", 1), ev("F", 1), ev("S", 2), ev("F", 2)}
	var others []*ddd.DomainEvent
	for i := range 20 {
		others = append(others, ev(fmt.Sprintf("o-%d", i%5), i))
	}
	must(t, bus.Dispatch(context.Background(), append(evts, others...)...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitUntil(t, 30*time.Second, "the other senders' events, past the set-aside calls", func() bool {
		_, handled, _ := log.snapshot()
		return len(handled) == len(others)
	})
	calls, _, _ := log.snapshot()
	for _, e := range evts[2:] {
		if calls[e.ID] != 0 {
			t.Errorf("event %s of a held sender ran while the set-aside call ran", e.ID)
		}
	}
	if st := bus.Stats(); st.SetAside != 2 || st.Unreturned != 2 || st.Abandoned != 0 || st.Failed != 0 {
		t.Errorf("stats %+v, want 2 set aside and unreturned, none abandoned or failed", st)
	}

	log.block[s0.ID] <- nil
	log.block[f0.ID] <- errors.New("late failure")
	waitUntil(t, 30*time.Second, "the held senders' events", func() bool {
		_, handled, _ := log.snapshot()
		return len(handled) == len(others)+6
	})
	calls, handled, overlaps := log.snapshot()
	if calls[s0.ID] != 1 {
		t.Errorf("the set-aside call that succeeded ran %d times, want 1 (its late success recorded)", calls[s0.ID])
	}
	if calls[f0.ID] != 2 {
		t.Errorf("the set-aside call that failed ran %d times, want 2 (its late failure recorded, then retried)", calls[f0.ID])
	}
	var s, f []string
	for _, h := range handled {
		switch h[0] {
		case 'S':
			s = append(s, h)
		case 'F':
			f = append(f, h)
		}
	}
	if fmt.Sprint(s) != "[S:0 S:1 S:2]" {
		t.Errorf("sender S handled as %v, want in order", s)
	}
	if len(f) != 3 || f[0] != "F:1" && f[0] != "F:0" {
		t.Errorf("sender F handled as %v, want 1 and 2 in order, 0 retried on its own", f)
	}
	if overlaps != 0 {
		t.Errorf("%d calls overlapped another call of their sender", overlaps)
	}
	if st := bus.Stats(); st.Unreturned != 0 || st.Handled != int64(len(others)+6) || st.Failed != 1 {
		t.Errorf("stats %+v, want nothing unreturned, every event handled once, 1 failure", st)
	}
	waitUntil(t, 10*time.Second, "an empty retry store", func() bool {
		var n int64
		must(t, db.Raw("SELECT COUNT(*) FROM ddd_retries").Scan(&n).Error)
		return n == 0
	})
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
