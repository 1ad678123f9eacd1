package conformance

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("TxCheckerLateAnswerCountsAsUnknown", testTxCheckerLateAnswer)
	register("TxCheckerStuckCallDoesNotHoldStart", testTxCheckerStuckStart)
	register("TxCheckerAnswerNeedsItsClaim", testTxCheckerClaim)
}

// gate is a checker's hold: it signals when a call comes in and holds it
// until released, ignoring the call's context, as a careless checker does.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate(t testing.TB) *gate {
	g := &gate{entered: make(chan struct{}, 10), release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// hold waits for the release, or for fallback: a bound, so that a bus that
// waits for the call is seen to wait rather than hang the test.
func (g *gate) hold(fallback time.Duration) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-time.After(fallback):
	}
}

func (g *gate) waitEntered(t testing.TB) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the checker was not called")
	}
}

// checkResult is what CheckTransactions returned.
type checkResult struct {
	n   int
	err error
}

// checkInBackground runs bus.CheckTransactions and sends its result.
func checkInBackground(ctx context.Context, bus *eventbus.EventBus) <-chan checkResult {
	done := make(chan checkResult, 1)
	go func() {
		n, err := bus.CheckTransactions(ctx)
		done <- checkResult{n, err}
	}()
	return done
}

// testTxCheckerLateAnswer: a checker that ignores its context and answers
// "commit" after TXCheckCallTimeout: the check ends at the limit, counts as
// unknown (the transaction rescheduled), and the late answer is never
// applied.
func testTxCheckerLateAnswer(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	const limit = 300 * time.Millisecond
	producer := newBus(t, db, "producer", eventbus.WithTXCheckTimeout(time.Minute), eventbus.WithTXCheckCallTimeout(limit))
	g := newGate(t)
	answered := make(chan struct{})
	must(t, producer.RegisterEventTXChecker(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) {
		defer close(answered)
		g.hold(limit + 3*time.Second)
		return ddd.TXCommit, nil
	}))
	evts := []*ddd.DomainEvent{mustEvent(t, "late", 0)}
	tctx, err := producer.DispatchBegin(ctx, evts...)
	must(t, err)
	id := txIDOf(t, tctx)
	makeDue(t, db)

	began := time.Now()
	done := checkInBackground(ctx, producer)
	g.waitEntered(t)
	var r checkResult
	select {
	case r = <-done:
	case <-time.After(limit + 2*time.Second):
		t.Errorf("CheckTransactions still waits on the checker %s after its %s limit", time.Since(began).Round(time.Millisecond), limit)
		r = <-done
	}
	if r.err != nil || r.n != 0 {
		t.Fatalf("CheckTransactions = %d, %v; want nothing resolved, no error", r.n, r.err)
	}
	g.open()
	<-answered // the late "commit" came back
	check := func(when string) {
		t.Helper()
		var row struct {
			State      int
			CheckCount int
			LastError  string
		}
		must(t, db.Raw("SELECT state, check_count, last_error FROM ddd_transactions WHERE id = ?", id).Scan(&row).Error)
		ahead := count(t, db, "SELECT due_at - updated_at FROM ddd_transactions WHERE id = ?", id)
		if row.State != txPending || row.CheckCount != 1 || !strings.Contains(row.LastError, "no answer within") {
			t.Fatalf("%s: state %d, %d checks, last error %q; want pending after 1 check that gave no answer in time", when, row.State, row.CheckCount, row.LastError)
		}
		// Rescheduled as for unknown: TXCheckTimeout (1m) later, not
		// merely held by the claim.
		if ahead < (50 * time.Second).Milliseconds() {
			t.Fatalf("%s: next check in %dms, want about a minute", when, ahead)
		}
		if n := logCount(t, db, eventIDs(evts)); n != 0 {
			t.Fatalf("%s: the late answer was applied: %d events published", when, n)
		}
	}
	check("after the check")
	// Nothing applies the late answer later either.
	if _, err := producer.CheckTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	check("after the late answer")
}

// testTxCheckerStuckStart: Start returns at once when cancelled while a
// checker call is stuck (it ignores its context, and the limit is far
// away); the stuck call's answer is never applied.
func testTxCheckerStuckStart(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer", eventbus.WithTXCheckTimeout(100*time.Millisecond))
	g := newGate(t)
	answered := make(chan struct{})
	must(t, producer.RegisterEventTXChecker(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) {
		defer close(answered)
		g.hold(time.Minute)
		return ddd.TXCommit, nil
	}))
	evts := []*ddd.DomainEvent{mustEvent(t, "stuck", 0)}
	tctx, err := producer.DispatchBegin(ctx, evts...)
	must(t, err)
	id := txIDOf(t, tctx)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- producer.Start(runCtx) }()
	g.waitEntered(t)
	cancel()
	select {
	case err := <-stopped:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Errorf("Start did not return within 5s of its cancel while a checker call was stuck")
		g.open()
		<-stopped
	}
	g.open()
	<-answered
	if s := txState(t, db, id); s != txPending {
		t.Fatalf("state %d after the abandoned call answered, want pending", s)
	}
	if n := logCount(t, db, eventIDs(evts)); n != 0 {
		t.Fatalf("the abandoned call's answer was applied: %d events published", n)
	}
}

// testTxCheckerClaim: while one instance's call runs, its claim (which
// covers the call's limit with a margin) keeps others from asking; if the
// claim is lost meanwhile (it lapsed, as for a stalled instance, and
// another instance checked), the first instance's answer is discarded.
func testTxCheckerClaim(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	const limit = 10 * time.Second
	opts := []eventbus.Option{eventbus.WithTXCheckTimeout(time.Minute), eventbus.WithTXCheckCallTimeout(limit)}
	g := newGate(t)
	a := newBus(t, db, "producer", opts...)
	must(t, a.RegisterEventTXChecker(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) {
		g.hold(limit / 2)
		return ddd.TXCommit, nil
	}))
	unknown := newProbe(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) { return ddd.TXUnknown, nil })
	b := newBus(t, tdb.Open(t), "producer", opts...)
	must(t, b.RegisterEventTXChecker(unknown.check))

	evts := []*ddd.DomainEvent{mustEvent(t, "claimed", 0)}
	tctx, err := a.DispatchBegin(ctx, evts...)
	must(t, err)
	id := txIDOf(t, tctx)
	makeDue(t, db)
	done := checkInBackground(ctx, a)
	g.waitEntered(t)

	// The claim covers the call's limit and a margin.
	claim := count(t, db, "SELECT due_at - updated_at FROM ddd_transactions WHERE id = ?", id)
	if claim < (limit + limit/2).Milliseconds() {
		t.Fatalf("the claim lasts %dms, want more than the %s limit with a margin", claim, limit)
	}
	if n, err := b.CheckTransactions(ctx); err != nil || n != 0 || unknown.total() != 0 {
		t.Fatalf("another instance resolved %d (err %v) and asked %d times while the claim held", n, err, unknown.total())
	}

	// The claim lapses (the first instance stalled past it) and the other
	// instance checks: unknown.
	must(t, db.Exec("UPDATE ddd_transactions SET due_at = 0 WHERE id = ?", id).Error)
	if n, err := b.CheckTransactions(ctx); err != nil || n != 0 || unknown.total() != 1 {
		t.Fatalf("after the claim lapsed: resolved %d (err %v), asked %d times; want 1 unknown answer", n, err, unknown.total())
	}
	// The first instance's "commit" now comes back: its claim is gone.
	g.open()
	r := <-done
	if r.err != nil || r.n != 0 {
		t.Fatalf("first instance: CheckTransactions = %d, %v; want nothing resolved, no error", r.n, r.err)
	}
	if s := txState(t, db, id); s != txPending {
		t.Fatalf("state %d after an answer given without a claim, want pending", s)
	}
	if n := logCount(t, db, eventIDs(evts)); n != 0 {
		t.Fatalf("the answer given without a claim was applied: %d events published", n)
	}
	// With its own claim, the first instance's answer counts.
	makeDue(t, db)
	if n, err := a.CheckTransactions(ctx); err != nil || n != 1 {
		t.Fatalf("first instance with its own claim: resolved %d, %v; want 1", n, err)
	}
	if s, n := txState(t, db, id), logCount(t, db, eventIDs(evts)); s != txCommitted || n != 1 {
		t.Fatalf("state %d with %d events published, want committed with 1", s, n)
	}
}
