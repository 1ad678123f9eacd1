package conformance

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// Handlers that ignore their context (issue 10, part 1): a call blocked on a
// channel that is not closed before the test's cleanup. The bus abandons it
// after HandlerTimeout plus a grace, holds only its sender, and stops within
// ShutdownGrace.
func init() {
	register("StuckHandlerHoldsOnlyItsSender", testStuckHandlerHoldsOnlyItsSender)
	register("AbandonedCallReturnsLate", testAbandonedCallReturnsLate)
	register("StopWithStuckCallHandsOver", testStopWithStuckCall)
}

// callLog is a handler that records every call: when each started, which
// succeeded, in what order per sender, and whether two calls of one sender
// ever ran at once. The first call of an event in block waits for its
// release, ignoring its context, then returns what it was released with
// (the bus must ignore a late result of an abandoned call).
type callLog struct {
	mu       sync.Mutex
	block    map[string]chan error
	calls    map[string]int       // event id -> calls started
	started  map[string]time.Time // event id -> its first call's start
	handled  map[string]time.Time // event id -> when a call succeeded
	order    map[string][]int     // sender -> N of its handled events, in order
	running  map[string]int       // sender -> calls running
	overlaps []string
}

func newCallLog() *callLog {
	return &callLog{block: map[string]chan error{}, calls: map[string]int{}, started: map[string]time.Time{},
		handled: map[string]time.Time{}, order: map[string][]int{}, running: map[string]int{}}
}

// blockFirstCall makes the first call of evt wait until the returned
// release is called (with nil when t ends), and return its argument.
func (p *callLog) blockFirstCall(t testing.TB, evt *ddd.DomainEvent) (release func(error)) {
	ch := make(chan error, 1)
	p.mu.Lock()
	p.block[evt.ID] = ch
	p.mu.Unlock()
	var once sync.Once
	release = func(err error) { once.Do(func() { ch <- err }) }
	t.Cleanup(func() { release(nil) })
	return release
}

func (p *callLog) handle(ctx context.Context, evt *ddd.DomainEvent) error {
	p.mu.Lock()
	p.calls[evt.ID]++
	first := p.calls[evt.ID] == 1
	if first {
		p.started[evt.ID] = time.Now()
	}
	if p.running[evt.Sender] > 0 {
		p.overlaps = append(p.overlaps, evt.Sender)
	}
	p.running[evt.Sender]++
	var wait chan error
	if first {
		wait = p.block[evt.ID]
	}
	p.mu.Unlock()
	var err error
	if wait != nil {
		err = <-wait // ignores ctx
	}
	var n OrderPlaced
	if derr := evt.Decode(&n); derr != nil && err == nil {
		err = derr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running[evt.Sender]--
	if err != nil {
		return err
	}
	if _, ok := p.handled[evt.ID]; !ok {
		p.handled[evt.ID] = time.Now()
		p.order[evt.Sender] = append(p.order[evt.Sender], n.N)
	}
	return nil
}

func (p *callLog) callsOf(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[id]
}

func (p *callLog) startedAt(id string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started[id]
}

// handledAll reports whether every event in ids was handled.
func (p *callLog) handledAll(ids []string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if _, ok := p.handled[id]; !ok {
			return false
		}
	}
	return true
}

// firstHandled returns the earliest time an event of ids was handled.
func (p *callLog) firstHandled(ids []string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for _, id := range ids {
		if at, ok := p.handled[id]; ok && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

func (p *callLog) orderOf(sender string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.order[sender]...)
}

// laterOrder is the order in which sender's events after its first (N 0)
// were handled.
func laterOrder(p *callLog, sender string) []int {
	var out []int
	for _, n := range p.orderOf(sender) {
		if n != 0 {
			out = append(out, n)
		}
	}
	return out
}

func (p *callLog) checkNoOverlap(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.overlaps) > 0 {
		t.Errorf("senders with two calls running at once: %v", p.overlaps)
	}
}

// timedRun is a bus running until stop, which measures how long Start
// takes to return once its context is cancelled.
type timedRun struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	took   time.Duration
}

// startTimed starts b; it is stopped when t ends, if not before.
func startTimed(t testing.TB, b *eventbus.EventBus) *timedRun {
	// A context value, as a user's trace id: the bus's logs about calls carry it.
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), logCtxKey{}, "trace-stuck"))
	r := &timedRun{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- b.Start(ctx) }()
	t.Cleanup(func() { r.stop(t, time.Minute) })
	return r
}

// stop cancels Start's context and returns how long Start took to return;
// t fails if that is more than limit.
func (r *timedRun) stop(t testing.TB, limit time.Duration) time.Duration {
	r.once.Do(func() {
		r.cancel()
		at := time.Now()
		select {
		case err := <-r.done:
			r.took = time.Since(at)
			if err != nil {
				t.Errorf("Start returned %v", err)
			}
		case <-time.After(limit):
			r.took = limit
			t.Errorf("Start did not return within %s of cancel", limit)
		}
	})
	return r.took
}

// dispatchEvents stores the given events and returns their ids.
func dispatchEvents(t testing.TB, bus *eventbus.EventBus, evts ...*ddd.DomainEvent) []string {
	t.Helper()
	must(t, bus.Dispatch(context.Background(), evts...))
	ids := make([]string, len(evts))
	for i, e := range evts {
		ids[i] = e.ID
	}
	return ids
}

// retryRow is an event's row in the retry store.
type retryRow struct {
	State, Attempts, Fifo int
	LastError             string
}

func retryRowOf(t testing.TB, db *gorm.DB, service, id string) (retryRow, bool) {
	t.Helper()
	var rows []retryRow
	must(t, db.Raw("SELECT state, attempts, fifo, last_error FROM ddd_retries WHERE service = ? AND event_id = ?", service, id).Scan(&rows).Error)
	if len(rows) == 0 {
		return retryRow{}, false
	}
	return rows[0], true
}

// othersWave dispatches n events from senders other-0..other-7 and returns
// their ids.
func othersWave(t testing.TB, bus *eventbus.EventBus, wave, n int) []string {
	var evts []*ddd.DomainEvent
	for i := range n {
		evts = append(evts, mustEvent(t, fmt.Sprintf("other-%d", i%8), wave*1000+i))
	}
	return dispatchEvents(t, bus, evts...)
}

// testStuckHandlerHoldsOnlyItsSender: the case. HandlerTimeout
// 500ms, batches of 10; one call never returns. The other senders' events,
// dispatched after the call started, are delivered once the call is
// abandoned; the stuck sender's retry and later events are stored and do
// not run while the call may still run; the abandoned call is counted and
// logged; Start returns at once when stopped.
func testStuckHandlerHoldsOnlyItsSender(t *testing.T, tdb *dbtest.Database) {
	const timeout = 500 * time.Millisecond
	db := tdb.Open(t)
	sink := newLogSink()
	bus := newBus(t, db, "stuck", eventbus.WithHandlerTimeout(timeout), eventbus.WithLimitPerRun(10),
		eventbus.WithConsumeConcurrent(4), eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 3}),
		eventbus.WithLogger(sink.logger()))
	p := newCallLog()
	must(t, bus.RegisterEventHandler(p.handle))
	run := startTimed(t, bus)
	stuck := mustEvent(t, "stuck", 0)
	p.blockFirstCall(t, stuck)
	dispatchEvents(t, bus, stuck)
	waitFor(t, 20*time.Second, "the stuck call to start", func() bool { return !p.startedAt(stuck.ID).IsZero() })
	began := p.startedAt(stuck.ID)

	// The stuck sender's later events, and 43 events of eight other senders.
	later := dispatchEvents(t, bus, mustEvent(t, "stuck", 1), mustEvent(t, "stuck", 2), mustEvent(t, "stuck", 3))
	others := othersWave(t, bus, 1, 43)
	waitFor(t, 30*time.Second, "the other senders' events", func() bool { return p.handledAll(others) })
	next := p.firstHandled(others).Sub(began)
	all := time.Since(began)
	t.Logf("%s: stuck call to the next sender's delivery %s (HandlerTimeout %s); all 43 delivered %s after it started",
		tdb.Dialect, next.Round(time.Millisecond), timeout, all.Round(time.Millisecond))
	if next < timeout {
		t.Errorf("another sender's event was delivered %s after the stuck call started, before HandlerTimeout: was it in the same batch?", next)
	}

	// A second wave goes through many polls, each with a retry phase that
	// would run the abandoned event's retry (LimitRetry: due at once) if its
	// sender were not held.
	more := othersWave(t, bus, 2, 30)
	waitFor(t, 30*time.Second, "the second wave", func() bool { return p.handledAll(more) && atHead(t, db, "stuck") })
	if n := p.callsOf(stuck.ID); n != 1 {
		t.Errorf("the abandoned event was called %d times while its first call still ran, want 1", n)
	}
	for _, id := range later {
		if n := p.callsOf(id); n != 0 {
			t.Errorf("a later event of the stuck sender was called %d times while the abandoned call ran", n)
		}
		if row, ok := retryRowOf(t, db, "stuck", id); !ok || row.State != 0 || row.Attempts != 0 {
			t.Errorf("later event of the held sender: retry row %+v (found %t), want a parked row", row, ok)
		}
	}
	row, ok := retryRowOf(t, db, "stuck", stuck.ID)
	if !ok || row.State != 0 || row.Attempts != 1 || !strings.Contains(row.LastError, "abandoned") {
		t.Errorf("abandoned event's retry row %+v (found %t), want a retry after 1 failed attempt", row, ok)
	}
	st := bus.Stats()
	if st.Abandoned != 1 || st.Unreturned != 1 || st.Failed != 1 {
		t.Errorf("stats %+v, want 1 abandoned, 1 unreturned, 1 failed", st)
	}
	if sink.count("handler call abandoned") != 1 {
		t.Errorf("%d abandonment log lines, want 1", sink.count("handler call abandoned"))
	}
	for key, want := range map[string]string{"service": "stuck", "event_id": stuck.ID, "type": stuck.Type, "sender": "stuck", "ctx": "trace-stuck"} {
		if got := sink.attr("handler call abandoned", key); got != want {
			t.Errorf("abandonment log: %s=%q, want %q", key, got, want)
		}
	}
	if d, err := time.ParseDuration(sink.attr("handler call abandoned", "running")); err != nil || d < timeout {
		t.Errorf("abandonment log: running=%q, want at least %s", sink.attr("handler call abandoned", "running"), timeout)
	}
	p.checkNoOverlap(t)

	// Stopping does not wait for the abandoned call, and hands the service over.
	took := run.stop(t, 10*time.Second)
	t.Logf("%s: cancel to Start returning, with an abandoned call running: %s", tdb.Dialect, took.Round(100*time.Microsecond))
	if leased(t, db, "stuck") {
		t.Error("the lease was not released")
	}
}

// testAbandonedCallReturnsLate: FIFO and normal senders, each with an
// abandoned call; a third bus whose strategy makes the abandoned event a
// dead letter. While the calls run, the FIFO sender stays parked behind
// its abandoned event. When they return, their results are ignored: the
// retries run, then the stored events, in order, never overlapping.
func testAbandonedCallReturnsLate(t *testing.T, tdb *dbtest.Database) {
	const timeout = 200 * time.Millisecond
	db := tdb.Open(t)
	bus := newBus(t, db, "late", eventbus.WithHandlerTimeout(timeout), eventbus.WithConsumeConcurrent(4),
		eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 3, Interval: 50 * time.Millisecond}))
	p := newCallLog()
	must(t, bus.RegisterEventHandler(p.handle))
	dead := newBus(t, db, "late-dead", eventbus.WithHandlerTimeout(timeout),
		eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 0}))
	pd := newCallLog()
	must(t, dead.RegisterEventHandler(pd.handle))

	fifo := ddd.WithSendType(ddd.SendFIFO)
	f0, m0 := mustEvent(t, "F", 0, fifo), mustEvent(t, "M", 0)
	releaseF, releaseM, releaseD := p.blockFirstCall(t, f0), p.blockFirstCall(t, m0), pd.blockFirstCall(t, m0)
	var fLater, mLater []string
	ids := dispatchEvents(t, bus, f0, m0)
	for n := 1; n <= 3; n++ {
		fLater = append(fLater, dispatchEvents(t, bus, mustEvent(t, "F", n, fifo))...)
		mLater = append(mLater, dispatchEvents(t, bus, mustEvent(t, "M", n))...)
	}
	others := othersWave(t, bus, 1, 20)
	start(t, bus)
	start(t, dead)

	waitFor(t, 30*time.Second, "the other senders' events on both buses", func() bool {
		return p.handledAll(others) && pd.handledAll(others) && atHead(t, db, "late") && atHead(t, db, "late-dead")
	})
	waitFor(t, 10*time.Second, "the abandoned event to be a dead letter", func() bool {
		n, err := dead.CountDeadLetters(context.Background())
		return err == nil && n == 1
	})
	dls, err := dead.DeadLetters(context.Background(), 0, 10)
	must(t, err)
	if len(dls) != 1 || dls[0].Event.ID != m0.ID || dls[0].Attempts != 1 || !strings.Contains(dls[0].LastError, "abandoned") {
		t.Fatalf("dead letters %+v, want %s after 1 abandoned attempt", dls, m0.ID)
	}
	for _, id := range append(append([]string{}, fLater...), mLater...) {
		if p.callsOf(id) != 0 {
			t.Errorf("event %s of a held sender ran while the abandoned call still ran", id)
		}
	}
	for _, id := range mLater {
		if pd.callsOf(id) != 0 {
			t.Errorf("dead-letter bus: event %s of a held sender ran while the abandoned call still ran", id)
		}
	}
	for _, id := range fLater {
		if row, ok := retryRowOf(t, db, "late", id); !ok || row.Fifo != 1 || row.Attempts != 0 {
			t.Errorf("FIFO event behind the abandoned one: row %+v (found %t), want parked", row, ok)
		}
	}

	// The calls return (successfully): their results are ignored.
	releaseF(nil)
	releaseM(nil)
	releaseD(nil)
	waitFor(t, 30*time.Second, "the held senders' events", func() bool {
		return p.handledAll(append(append(ids, fLater...), mLater...)) && pd.handledAll(mLater)
	})
	for _, id := range ids {
		if n := p.callsOf(id); n != 2 {
			t.Errorf("abandoned event %s called %d times, want 2 (the abandoned call, then its retry)", id, n)
		}
	}
	if n := pd.callsOf(m0.ID); n != 1 {
		t.Errorf("dead-lettered event called %d times, want 1", n)
	}
	// The FIFO sender in log order; the normal one's later events in order,
	// its failed event retried on its own (when its interval has passed).
	if got := fmt.Sprint(p.orderOf("F")); got != "[0 1 2 3]" {
		t.Errorf("FIFO sender handled in order %s, want [0 1 2 3]", got)
	}
	if got := fmt.Sprint(laterOrder(p, "M")); got != "[1 2 3]" {
		t.Errorf("normal sender's later events handled in order %s, want [1 2 3]", got)
	}
	if got := fmt.Sprint(laterOrder(pd, "M")); got != "[1 2 3]" {
		t.Errorf("dead-letter bus: sender M handled in order %s, want [1 2 3]", got)
	}
	p.checkNoOverlap(t)
	pd.checkNoOverlap(t)
	waitFor(t, 10*time.Second, "the retry store to keep only the dead letter", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_retries") == 1
	})
	if st := bus.Stats(); st.Abandoned != 2 || st.Unreturned != 0 {
		t.Errorf("stats %+v, want 2 abandoned, 0 unreturned", st)
	}
}

// testStopWithStuckCall: an instance with a call that never returns (a long
// HandlerTimeout, so it is not abandoned) is stopped. Start returns after
// ShutdownGrace and releases the lease; a standby in another OS process,
// which could not take over while the instance ran, takes over at once and
// delivers what the stuck instance had not finished.
func testStopWithStuckCall(t *testing.T, tdb *dbtest.Database) {
	const grace = time.Second
	db := tdb.Open(t)
	bus := newBus(t, db, "handover", eventbus.WithShutdownGrace(grace), eventbus.WithLimitPerRun(10),
		eventbus.WithConsumeConcurrent(4), eventbus.WithLeaseDuration(2*time.Second))
	p := newCallLog()
	must(t, bus.RegisterEventHandler(p.handle))
	run := startTimed(t, bus)
	waitFor(t, 20*time.Second, "the first instance to take the lease", func() bool { return leased(t, db, "handover") })
	standby := startStandby(t, tdb, "handover")

	stuck := mustEvent(t, "stuck", 0)
	p.blockFirstCall(t, stuck)
	var evts []*ddd.DomainEvent
	for i := range 9 {
		evts = append(evts, mustEvent(t, fmt.Sprintf("s-%d", i%3), i))
	}
	ids := dispatchEvents(t, bus, append([]*ddd.DomainEvent{stuck}, evts...)...)
	waitFor(t, 20*time.Second, "the batch to run", func() bool { return p.handledAll(ids[1:]) && p.callsOf(stuck.ID) == 1 })
	if n := standby.count(); n != 0 {
		t.Fatalf("the standby delivered %d events while the first instance held the lease", n)
	}

	stopTime := run.stop(t, grace+20*time.Second)
	returned := time.Now()
	if stopTime < grace-50*time.Millisecond {
		t.Errorf("Start returned %s after cancel, before ShutdownGrace %s: did it wait for the call in flight?", stopTime, grace)
	}
	if stopTime > grace+5*time.Second {
		t.Errorf("Start returned %s after cancel, want about ShutdownGrace %s", stopTime, grace)
	}
	waitFor(t, 20*time.Second, "the standby to deliver the stuck event", func() bool { return !standby.delivered(stuck.ID).IsZero() })
	takeover := standby.firstDelivery().Sub(returned)
	t.Logf("%s: cancel to Start returning with a stuck call in flight: %s (ShutdownGrace %s); Start returning to the standby process's first delivery: %s",
		tdb.Dialect, stopTime.Round(time.Millisecond), grace, takeover.Round(time.Millisecond))
	if takeover > 5*time.Second {
		t.Errorf("the standby took over %s after the first instance stopped, want at once (well under the 2s lease)", takeover)
	}
	// Nothing is lost: what the first instance did not finish, the standby delivered.
	for _, id := range ids {
		if p.handledAll([]string{id}) {
			continue
		}
		waitFor(t, 20*time.Second, "the standby to deliver "+id, func() bool { return !standby.delivered(id).IsZero() })
	}
	if st := bus.Stats(); st.Abandoned != 1 || st.Unreturned != 1 {
		t.Errorf("stats %+v, want the stuck call counted as abandoned and unreturned", st)
	}
}
