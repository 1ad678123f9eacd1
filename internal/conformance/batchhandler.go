package conformance

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/internal/store"
)

func init() {
	register("BatchHandlerOrderAndPrefix", testBatchHandlerOrder)
	register("BatchHandlerErrorBacksOff", testBatchHandlerBackoff)
	register("BatchHandlerPermanentIsDeadLetter", testBatchHandlerDead)
	register("BatchHandlerStopDuringCall", testBatchHandlerStop)
	register("BatchHandlerKeepsLease", testBatchHandlerKeepsLease)
	register("BatchHandlerLeaseLost", testBatchHandlerLeaseLost)
	register("BatchHandlerPartitions", testBatchHandlerPartitions)
}

// batchLog records what a batch handler was called with and finished.
type batchLog struct {
	mu       sync.Mutex
	calls    int
	finished []string // event ids, in the order they were reported finished
	next     string   // the id the next call must start with ("" : unknown)
	errs     []string
}

// call checks that evts start where the last call's finished prefix ended,
// and records evts[:n] as finished.
func (l *batchLog) call(evts []*ddd.DomainEvent, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.next != "" && len(evts) > 0 && evts[0].ID != l.next {
		l.errs = append(l.errs, "a call started at "+evts[0].ID+", want "+l.next)
	}
	for _, e := range evts[:n] {
		l.finished = append(l.finished, e.ID)
	}
	l.next = ""
	if n < len(evts) {
		l.next = evts[n].ID
	}
}

func (l *batchLog) snapshot() (calls int, finished []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls, append([]string(nil), l.finished...)
}

func (l *batchLog) check(t *testing.T, ids []string) {
	t.Helper()
	_, got := l.snapshot()
	l.mu.Lock()
	for _, e := range l.errs[:min(5, len(l.errs))] {
		t.Error(e)
	}
	l.mu.Unlock()
	if len(got) != len(ids) {
		t.Fatalf("%d events finished, want %d", len(got), len(ids))
	}
	for i := range ids {
		if got[i] != ids[i] {
			t.Fatalf("finished event %d is %s, want %s (log order)", i, got[i], ids[i])
		}
	}
}

// testBatchHandlerOrder: every event comes in log order exactly once as
// finished; a call that finishes only a prefix gets the rest first in the
// next call. Registration is validated.
func testBatchHandlerOrder(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	var evts []*ddd.DomainEvent
	for i := range 1500 {
		evts = append(evts, mustEvent(t, senderName(i%17), i))
	}
	ids := dispatchEvents(t, producer, evts...)

	bus := newBus(t, db, "batches", eventbus.WithLimitPerRun(200))
	if err := bus.RegisterBatchHandler(nil); !errors.Is(err, eventbus.ErrInvalidHandler) {
		t.Errorf("RegisterBatchHandler(nil) = %v, want ErrInvalidHandler", err)
	}
	var log batchLog
	var sizes sync.Map
	must(t, bus.RegisterBatchHandler(func(ctx context.Context, evts []*ddd.DomainEvent) (int, error) {
		sizes.Store(len(evts), true)
		n := len(evts)
		if rand.IntN(3) == 0 {
			n = rand.IntN(len(evts) + 1) // a prefix, possibly empty
		}
		log.call(evts, n)
		return n, nil
	}))
	if err := bus.RegisterEventHandler(newRecorder().handle); !errors.Is(err, eventbus.ErrHandlerRegistered) {
		t.Errorf("RegisterEventHandler after RegisterBatchHandler = %v, want ErrHandlerRegistered", err)
	}
	if err := bus.RegisterBatchHandler(func(context.Context, []*ddd.DomainEvent) (int, error) { return 0, nil }); !errors.Is(err, eventbus.ErrHandlerRegistered) {
		t.Errorf("RegisterBatchHandler twice = %v, want ErrHandlerRegistered", err)
	}
	stop := start(t, bus)
	waitFor(t, 60*time.Second, "every event finished", func() bool { _, f := log.snapshot(); return len(f) >= len(ids) })
	waitFor(t, 30*time.Second, "the offset at the head", func() bool { return atHead(t, db, "batches") })
	stop()
	log.check(t, ids)
	if _, ok := sizes.Load(200); !ok {
		t.Errorf("no call got a full batch of LimitPerRun (200) events")
	}
	if s := bus.Stats(); s.Handled != int64(len(ids)) {
		t.Errorf("Stats().Handled = %d, want %d", s.Handled, len(ids))
	}
}

// testBatchHandlerBackoff: a failing call commits its prefix; the rest is
// delivered again from the first unfinished event, and calls that keep
// failing are spaced out (RunInterval doubling), not repeated at once.
func testBatchHandlerBackoff(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	ids := dispatchN(t, producer, "s", 0, 50)
	bus := newBus(t, db, "batch-backoff")
	var log batchLog
	var failing atomic.Bool
	failing.Store(true)
	var failedCalls atomic.Int64
	must(t, bus.RegisterBatchHandler(func(ctx context.Context, evts []*ddd.DomainEvent) (int, error) {
		if failing.Load() {
			n := min(1, len(evts)) // one more event per failed call
			log.call(evts, n)
			failedCalls.Add(1)
			return n, errors.New("broker down")
		}
		log.call(evts, len(evts))
		return len(evts), nil
	}))
	stop := start(t, bus)
	waitFor(t, 10*time.Second, "a failed call", func() bool { return failedCalls.Load() >= 1 })
	began := time.Now()
	time.Sleep(1500 * time.Millisecond) // the measured period, not a synchronisation
	n, elapsed := failedCalls.Load(), time.Since(began)
	// RunInterval is 20ms: without backoff, 1.5s would see ~75 polls or
	// more; doubling from 20ms (±20%) allows about 7.
	if n > 15 {
		t.Errorf("%d failed calls in %s: the poll does not back off after a batch handler's error", n, elapsed)
	}
	failing.Store(false)
	waitFor(t, 30*time.Second, "every event finished", func() bool { _, f := log.snapshot(); return len(f) >= len(ids) })
	stop()
	log.check(t, ids)
	if s := bus.Stats(); s.Failed < 1 {
		t.Errorf("Stats().Failed = %d, want the failed calls counted", s.Failed)
	}
}

// testBatchHandlerDead: a ddd.Permanent error makes the first unfinished
// event a dead letter; the events after it go on.
func testBatchHandlerDead(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	ids := dispatchN(t, producer, "s", 0, 30)
	poison := map[string]bool{ids[7]: true, ids[8]: true, ids[20]: true}
	bus := newBus(t, db, "batch-dead")
	var log batchLog
	must(t, bus.RegisterBatchHandler(func(ctx context.Context, evts []*ddd.DomainEvent) (int, error) {
		for i, e := range evts {
			if poison[e.ID] {
				log.call(evts, i)
				return i, ddd.Permanent(errors.New("never publishable"))
			}
		}
		log.call(evts, len(evts))
		return len(evts), nil
	}))
	stop := start(t, bus)
	var want []string
	for _, id := range ids {
		if !poison[id] {
			want = append(want, id)
		}
	}
	waitFor(t, 30*time.Second, "the other events finished", func() bool { _, f := log.snapshot(); return len(f) >= len(want) })
	waitFor(t, 30*time.Second, "the offset at the head", func() bool { return atHead(t, db, "batch-dead") })
	stop()
	_, got := log.snapshot()
	if len(got) != len(want) {
		t.Fatalf("%d finished, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("finished %d is %s, want %s", i, got[i], want[i])
		}
	}
	dead := deadLetterIDs(t, bus)
	if !equalStrings(dead, sortedCopy([]string{ids[7], ids[8], ids[20]})) {
		t.Errorf("dead letters %v, want the three poison events", dead)
	}
}

// testBatchHandlerStop: a stop during a call cancels its context after
// ShutdownGrace; the prefix it reports is committed and the next owner
// starts exactly after it.
func testBatchHandlerStop(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	ids := dispatchN(t, producer, "s", 0, 40)
	bus := newBus(t, db, "batch-stop", eventbus.WithShutdownGrace(300*time.Millisecond))
	entered := make(chan struct{})
	var cancelled atomic.Bool
	must(t, bus.RegisterBatchHandler(func(ctx context.Context, evts []*ddd.DomainEvent) (int, error) {
		close(entered) // one call only: a second would panic the test
		select {
		case <-ctx.Done():
			cancelled.Store(true)
		case <-time.After(20 * time.Second):
		}
		return 15, ctx.Err()
	}))
	stop := start(t, bus)
	receive(t, entered, 20*time.Second, "the batch call")
	began := time.Now()
	stop()
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("Start returned %s after the stop: the call's context was not cancelled at the grace's end", took)
	}
	if !cancelled.Load() {
		t.Errorf("the call's context was not cancelled by the stop")
	}
	if got, want := consumedSeq(t, db, "batch-stop"), eventSeq(t, db, mustFind(t, db, ids[14])); got != want {
		t.Errorf("offset %d after the stop, want %d (the 15 events reported finished)", got, want)
	}
	next := newBus(t, tdb.Open(t), "batch-stop")
	var log batchLog
	log.next = ids[15]
	must(t, next.RegisterBatchHandler(func(ctx context.Context, evts []*ddd.DomainEvent) (int, error) {
		log.call(evts, len(evts))
		return len(evts), nil
	}))
	stop = start(t, next)
	waitFor(t, 30*time.Second, "the rest finished", func() bool { _, f := log.snapshot(); return len(f) >= len(ids)-15 })
	stop()
	log.check(t, ids[15:])
}

// testBatchHandlerKeepsLease: a call longer than the lease keeps it (the
// heartbeat renews it): a second instance gets nothing while it runs, and
// its prefix is committed.
func testBatchHandlerKeepsLease(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	ids := dispatchN(t, producer, "s", 0, 20)
	opts := []eventbus.Option{eventbus.WithLeaseDuration(1500 * time.Millisecond)}
	busA := newBus(t, db, "batch-lease", opts...)
	release := make(chan struct{})
	var callsA atomic.Int64
	must(t, busA.RegisterBatchHandler(func(ctx context.Context, evts []*ddd.DomainEvent) (int, error) {
		if callsA.Add(1) == 1 {
			<-release
		}
		return len(evts), nil
	}))
	stopA := start(t, busA)
	waitFor(t, 20*time.Second, "A's call", func() bool { return callsA.Load() == 1 })
	busB := newBus(t, tdb.Open(t), "batch-lease", opts...)
	var callsB atomic.Int64
	must(t, busB.RegisterBatchHandler(func(ctx context.Context, evts []*ddd.DomainEvent) (int, error) {
		callsB.Add(1)
		return len(evts), nil
	}))
	start(t, busB)
	time.Sleep(4 * time.Second) // over twice the lease: the period observed, not a synchronisation
	if n := callsB.Load(); n != 0 {
		t.Errorf("the standby got %d calls while the owner's call ran: the lease was not kept", n)
	}
	close(release)
	want := eventSeq(t, db, mustFind(t, db, ids[len(ids)-1]))
	waitFor(t, 20*time.Second, "A's commit", func() bool { return consumedSeq(t, db, "batch-lease") == want })
	stopA()
	dispatchN(t, producer, "s", 20, 5)
	waitFor(t, 20*time.Second, "B to take over", func() bool { return callsB.Load() > 0 && atHead(t, db, "batch-lease") })
}

// testBatchHandlerLeaseLost: a seek takes the lease while a call runs:
// the call's context is cancelled, what it reports is not committed, and
// the events are delivered again from the seek's position.
func testBatchHandlerLeaseLost(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	ids := dispatchN(t, producer, "s", 0, 10)
	bus := newBus(t, db, "batch-lost", eventbus.WithLeaseDuration(1500*time.Millisecond))
	var calls atomic.Int64
	entered := make(chan struct{})
	var cancelled atomic.Bool
	var log batchLog
	must(t, bus.RegisterBatchHandler(func(ctx context.Context, evts []*ddd.DomainEvent) (int, error) {
		if calls.Add(1) == 1 {
			close(entered)
			select {
			case <-ctx.Done():
				cancelled.Store(true)
			case <-time.After(20 * time.Second):
			}
			return len(evts), nil // claims all: the commit must be refused
		}
		log.call(evts, len(evts))
		return len(evts), nil
	}))
	start(t, bus)
	receive(t, entered, 20*time.Second, "the first call")
	_, err := producer.SeekService(context.Background(), "batch-lost", eventbus.SeekEarliest)
	must(t, err)
	waitFor(t, 20*time.Second, "every event delivered again", func() bool { _, f := log.snapshot(); return len(f) >= len(ids) })
	if !cancelled.Load() {
		t.Errorf("the call's context was not cancelled when the lease was lost")
	}
	log.check(t, ids)
}

// testBatchHandlerPartitions: with partitions, each call holds one
// partition's events only, and every sender's events are finished once,
// in order, whatever prefixes the calls report.
func testBatchHandlerPartitions(t *testing.T, tdb *dbtest.Database) {
	const parts = 3
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	var evts []*ddd.DomainEvent
	for i := range 600 {
		evts = append(evts, mustEvent(t, senderName(i%23), i))
	}
	ids := dispatchEvents(t, producer, evts...)
	bus := newBus(t, db, "batch-parts", eventbus.WithPartitions(parts), eventbus.WithLimitPerRun(50))
	var mu sync.Mutex
	finished := map[string]int{}
	bySender := map[string][]int{}
	mixed := 0
	must(t, bus.RegisterBatchHandler(func(ctx context.Context, evts []*ddd.DomainEvent) (int, error) {
		n := len(evts)
		if rand.IntN(3) == 0 {
			n = rand.IntN(len(evts) + 1)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evts[1:] {
			if store.PartitionOf(e.Sender, parts) != store.PartitionOf(evts[0].Sender, parts) {
				mixed++
				break
			}
		}
		for _, e := range evts[:n] {
			finished[e.ID]++
			bySender[e.Sender] = append(bySender[e.Sender], decodeN(t, e))
		}
		return n, nil
	}))
	start(t, bus)
	waitFor(t, 60*time.Second, "every event finished", func() bool { mu.Lock(); defer mu.Unlock(); return len(finished) == len(ids) })
	mu.Lock()
	defer mu.Unlock()
	if mixed > 0 {
		t.Errorf("%d calls held events of several partitions", mixed)
	}
	for _, id := range ids {
		if finished[id] != 1 {
			t.Errorf("event %s finished %d times, want 1", id, finished[id])
		}
	}
	for s, ns := range bySender {
		for i := 1; i < len(ns); i++ {
			if ns[i] <= ns[i-1] {
				t.Errorf("sender %s out of order: %v", s, ns[max(0, i-3):min(len(ns), i+3)])
				break
			}
		}
	}
}
