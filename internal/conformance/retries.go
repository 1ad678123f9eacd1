package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("RetryStrategySchedules", testRetrySchedules)
	register("FailingSenderDoesNotBlockOthers", testFailingSenderDoesNotBlock)
	register("PanicIsRecoveredAsFailure", testPanicRecovered)
	register("PermanentErrorGoesStraightToDeadLetters", testPermanentError)
	register("DeadLettersListReplayDiscard", testDeadLetters)
	register("FIFOParksLaterEventsOfSender", testFIFOParking)
}

// attemptLog records when each event's handler was called.
type attemptLog struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (a *attemptLog) add(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.at == nil {
		a.at = map[string][]time.Time{}
	}
	a.at[id] = append(a.at[id], time.Now())
	return len(a.at[id])
}

func (a *attemptLog) times(id string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.at[id]...)
}

func testRetrySchedules(t *testing.T, tdb *dbtest.Database) {
	cases := []struct {
		name     string
		strategy eventbus.IRetryStrategy
		attempts int             // handler calls before the event is dead
		gaps     []time.Duration // minimum wait before each retry
	}{
		{"LimitRetry", &eventbus.LimitRetry{Limit: 3}, 4, []time.Duration{0, 0, 0}},
		{"IntervalRetry", &eventbus.IntervalRetry{Limit: 2, Interval: 300 * time.Millisecond}, 3,
			[]time.Duration{300 * time.Millisecond, 300 * time.Millisecond}},
		{"CustomRetry", &eventbus.CustomRetry{Intervals: []time.Duration{100 * time.Millisecond, 400 * time.Millisecond}}, 3,
			[]time.Duration{100 * time.Millisecond, 400 * time.Millisecond}},
		{"NoRetry", &eventbus.LimitRetry{Limit: 0}, 1, nil},
	}
	db := tdb.Open(t)
	for _, tc := range cases {
		// Each case's service starts after the events of the cases before it.
		bus := newBus(t, db, "retry-"+tc.name, eventbus.WithRetryStrategy(tc.strategy),
			eventbus.WithStartPosition(eventbus.StartFromLatest))
		var log attemptLog
		must(t, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
			n := log.add(evt.ID)
			return fmt.Errorf("attempt %d fails", n)
		}))
		start(t, bus)
		waitFor(t, 10*time.Second, "the service to register", func() bool { return leased(t, db, bus.Service()) })
		evt := mustEvent(t, "r-"+tc.name, 1)
		must(t, bus.Dispatch(context.Background(), evt))
		waitFor(t, 15*time.Second, tc.name+" dead letter", func() bool {
			n, err := bus.CountDeadLetters(context.Background())
			return err == nil && n == 1
		})
		dls, err := bus.DeadLetters(context.Background(), 0, 10)
		must(t, err)
		if len(dls) != 1 || dls[0].Event.ID != evt.ID || dls[0].Attempts != tc.attempts {
			t.Fatalf("%s: dead letters %+v, want %s after %d attempts", tc.name, dls, evt.ID, tc.attempts)
		}
		if want := fmt.Sprintf("attempt %d fails", tc.attempts); dls[0].LastError != want {
			t.Errorf("%s: last error %q, want %q", tc.name, dls[0].LastError, want)
		}
		times := log.times(evt.ID)
		if len(times) != tc.attempts {
			t.Fatalf("%s: handler called %d times, want %d", tc.name, len(times), tc.attempts)
		}
		// Each retry waits at least its interval (database and process
		// clocks agree here; allow a little skew).
		for i, gap := range tc.gaps {
			if got := times[i+1].Sub(times[i]); got < gap-30*time.Millisecond {
				t.Errorf("%s: retry %d ran %s after the failure, want >= %s", tc.name, i+1, got, gap)
			}
		}
	}
}

func testFailingSenderDoesNotBlock(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "isolation", eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 100, Interval: time.Hour}))
	rec := newRecorder()
	rec.fail = func(evt *ddd.DomainEvent) error {
		if evt.Sender == "bad" {
			return errors.New("always fails")
		}
		return nil
	}
	must(t, bus.RegisterEventHandler(rec.handle))
	start(t, bus)
	bad := mustEvent(t, "bad", 1)
	must(t, bus.Dispatch(context.Background(), bad))
	var good []string
	for i := range 20 {
		good = append(good, dispatchN(t, bus, fmt.Sprintf("good-%d", i%4), i, 1)...)
	}
	waitFor(t, 10*time.Second, "the good senders' events", func() bool { return rec.deliveries() >= len(good) })
	rec.checkExactlyOnce(t, good)
	// The failure waits in the retry store, not in front of the offset.
	waitFor(t, 10*time.Second, "1 retrying and nothing pending", func() bool {
		st, err := bus.Services(context.Background())
		must(t, err)
		return len(st) == 1 && st[0].Retrying == 1 && st[0].Pending == 0
	})
}

func testPanicRecovered(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "panicky", eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 1}))
	var log attemptLog
	must(t, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		if log.add(evt.ID) == 1 {
			panic("first call explodes")
		}
		return nil
	}))
	start(t, bus)
	evt := mustEvent(t, "p", 1)
	must(t, bus.Dispatch(context.Background(), evt))
	waitFor(t, 10*time.Second, "the retry after the panic", func() bool { return len(log.times(evt.ID)) == 2 })
	waitFor(t, 10*time.Second, "the retry row to be cleared", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_retries") == 0
	})
	if st := bus.Stats(); st.Failed != 1 || st.Handled != 1 {
		t.Fatalf("stats %+v, want 1 failed and 1 handled", st)
	}

	// A handler that always panics ends as a dead letter whose last error
	// holds the panic value and the stack.
	always := newBus(t, db, "always-panics", eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 0}))
	must(t, always.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { panic("kaboom") }))
	start(t, always)
	waitFor(t, 10*time.Second, "the dead letter", func() bool {
		n, _ := always.CountDeadLetters(context.Background())
		return n == 1
	})
	dls, err := always.DeadLetters(context.Background(), 0, 10)
	must(t, err)
	if len(dls) != 1 || !strings.Contains(dls[0].LastError, "kaboom") || !strings.Contains(dls[0].LastError, "goroutine ") {
		t.Fatalf("dead letter error %q, want the panic value and a stack", dls[0].LastError)
	}
}

func testPermanentError(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "strict", eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 10}))
	router := ddd.NewRouter()
	type Strict struct {
		Amount int `json:"amount"`
	}
	calls := 0
	var mu sync.Mutex
	// The router turns a payload that does not decode into T into a permanent error.
	must(t, router.Handle("strict", func(ctx context.Context, evt *ddd.DomainEvent) error {
		mu.Lock()
		calls++
		mu.Unlock()
		var s Strict
		if err := evt.Decode(&s); err != nil {
			return ddd.Permanent(err)
		}
		return nil
	}))
	must(t, bus.RegisterEventHandler(router.HandleEvent))
	start(t, bus)
	evt := &ddd.DomainEvent{ID: ddd.NewEventID(), Type: "strict", Sender: "s", SendType: ddd.SendNormal,
		Payload: []byte(`{"amount":"not a number"}`), CreatedAt: time.Now()}
	must(t, bus.Dispatch(context.Background(), evt))
	waitFor(t, 10*time.Second, "the dead letter", func() bool {
		n, _ := bus.CountDeadLetters(context.Background())
		return n == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("handler called %d times, want 1 (no retries after a permanent error)", calls)
	}
}

func testDeadLetters(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "dlq", eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 0}))
	var healthy sync.Map // event ID -> true once the handler should succeed
	rec := newRecorder()
	rec.fail = func(evt *ddd.DomainEvent) error {
		if _, ok := healthy.Load(evt.ID); ok {
			return nil
		}
		return errors.New("downstream unavailable")
	}
	must(t, bus.RegisterEventHandler(rec.handle))
	start(t, bus)
	ids := dispatchN(t, bus, "dl", 0, 3)
	ctx := context.Background()
	waitFor(t, 10*time.Second, "three dead letters", func() bool {
		n, _ := bus.CountDeadLetters(ctx)
		return n == 3
	})
	dls, err := bus.DeadLetters(ctx, 0, 2)
	must(t, err)
	if len(dls) != 2 || dls[0].Event.ID != ids[0] || dls[1].Event.ID != ids[1] {
		t.Fatalf("first page %v, want events %v", dls, ids[:2])
	}
	next, err := bus.DeadLetters(ctx, dls[1].Seq, 2)
	must(t, err)
	if len(next) != 1 || next[0].Event.ID != ids[2] {
		t.Fatalf("second page %v, want event %s", next, ids[2])
	}
	if _, err := bus.DeadLetters(ctx, 0, 0); !errors.Is(err, eventbus.ErrInvalidArgument) {
		t.Fatalf("limit 0: err %v, want ErrInvalidArgument", err)
	}

	// Replay ids[0] twice: it is delivered once.
	healthy.Store(ids[0], true)
	n1, err := bus.ReplayDeadLetters(ctx, ids[0])
	must(t, err)
	n2, err := bus.ReplayDeadLetters(ctx, ids[0])
	must(t, err)
	if n1 != 1 || n2 != 0 {
		t.Fatalf("replays found %d then %d, want 1 then 0", n1, n2)
	}
	waitFor(t, 10*time.Second, "the replayed event", func() bool { return rec.deliveries() == 1 })
	// Discard ids[1]; an unknown id is not found.
	nd, err := bus.DiscardDeadLetters(ctx, ids[1], "no-such-event")
	must(t, err)
	if nd != 1 {
		t.Fatalf("discard found %d, want 1", nd)
	}
	waitFor(t, 10*time.Second, "the replayed event's row to go", func() bool {
		n, _ := bus.CountDeadLetters(ctx)
		return n == 1 && count(t, db, "SELECT COUNT(*) FROM ddd_retries") == 1
	})
	if n, _ := bus.ReplayDeadLetters(ctx, ids[0]); n != 0 {
		t.Fatalf("replaying a delivered event found %d, want 0", n)
	}
	rec.checkExactlyOnce(t, ids[:1])
	left, err := bus.DeadLetters(ctx, 0, 10)
	must(t, err)
	if len(left) != 1 || left[0].Event.ID != ids[2] {
		t.Fatalf("remaining dead letters %v, want only %s", left, ids[2])
	}
}

func testFIFOParking(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "fifo", eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 5, Interval: 50 * time.Millisecond}))
	var failsLeft sync.Map // event ID -> remaining failures
	rec := newRecorder()
	rec.fail = func(evt *ddd.DomainEvent) error {
		if v, ok := failsLeft.Load(evt.ID); ok && v.(int) > 0 {
			failsLeft.Store(evt.ID, v.(int)-1)
			return errors.New("not yet")
		}
		return nil
	}
	must(t, bus.RegisterEventHandler(rec.handle))

	fifo := ddd.WithSendType(ddd.SendFIFO)
	// Sender A: FIFO events 0..4, event 1 fails twice. Its FIFO successors
	// must wait for it; a normal event of A does not wait; sender B is
	// unaffected.
	var aFIFO []*ddd.DomainEvent
	for n := range 5 {
		aFIFO = append(aFIFO, mustEvent(t, "A", n, fifo))
	}
	failsLeft.Store(aFIFO[1].ID, 2)
	aNormal := mustEvent(t, "A-normal", 100)
	var bEvents []*ddd.DomainEvent
	for n := range 5 {
		bEvents = append(bEvents, mustEvent(t, "B", n, fifo))
	}
	all := append(append(append([]*ddd.DomainEvent{}, aFIFO...), aNormal), bEvents...)
	must(t, bus.Dispatch(context.Background(), all...))
	start(t, bus)

	var ids []string
	for _, e := range all {
		ids = append(ids, e.ID)
	}
	waitFor(t, 15*time.Second, "every event handled", func() bool { return rec.distinct() == len(all) })
	rec.checkExactlyOnce(t, ids)
	rec.mu.Lock()
	gotA := append([]int(nil), rec.bySender["A"]...)
	rec.mu.Unlock()
	if fmt.Sprint(gotA) != "[0 1 2 3 4]" {
		t.Fatalf("sender A handled in order %v, want [0 1 2 3 4]", gotA)
	}
	if st := bus.Stats(); st.Parked < 3 || st.Failed != 2 {
		t.Fatalf("stats %+v, want >= 3 parked and 2 failures", st)
	}
	waitFor(t, 10*time.Second, "the retry store to empty", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_retries") == 0
	})
}

func init() { register("HandlerTimeoutCountsAsFailure", testHandlerTimeout) }

func testHandlerTimeout(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "slowpoke", eventbus.WithHandlerTimeout(50*time.Millisecond),
		eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 0}))
	must(t, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		<-ctx.Done() // a handler that honours its context
		return ctx.Err()
	}))
	start(t, bus)
	must(t, bus.Dispatch(context.Background(), mustEvent(t, "slow", 1)))
	waitFor(t, 10*time.Second, "the dead letter", func() bool { n, _ := bus.CountDeadLetters(context.Background()); return n == 1 })
	dls, err := bus.DeadLetters(context.Background(), 0, 1)
	must(t, err)
	if !strings.Contains(dls[0].LastError, context.DeadlineExceeded.Error()) {
		t.Fatalf("last error %q, want a deadline error", dls[0].LastError)
	}
}
