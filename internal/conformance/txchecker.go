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
	"gorm.io/gorm"
)

func init() {
	register("TxCheckerResolvesCrashBeforeCommit", testTxCheckerResolvesCrash)
	register("TxCheckerUnknownBacksOffToUnresolved", testTxCheckerBackoff)
	register("TxWithoutCheckerIsUnresolvedNotDropped", testTxNoChecker)
	register("TxCheckerOneInstanceAtATime", testTxCheckerExclusive)
	register("TxCheckerChecksEveryDueTransaction", testTxCheckerAllDue)
	register("TxCheckerRunsInBackgroundAndSurvivesPanics", testTxCheckerBackground)
}

// checkerProbe is a TX checker that records each call, keyed by the sender
// of the transaction's first event, and answers with answer.
type checkerProbe struct {
	mu     sync.Mutex
	calls  map[string]int
	events map[string][]string // event IDs of the last call
	answer func(ctx context.Context, events []*ddd.DomainEvent) (ddd.TXStatus, error)
}

func newProbe(answer func(ctx context.Context, events []*ddd.DomainEvent) (ddd.TXStatus, error)) *checkerProbe {
	return &checkerProbe{calls: map[string]int{}, events: map[string][]string{}, answer: answer}
}

func (p *checkerProbe) check(ctx context.Context, events []*ddd.DomainEvent) (ddd.TXStatus, error) {
	key := ""
	if len(events) > 0 {
		key = events[0].Sender
	}
	p.mu.Lock()
	p.calls[key]++
	p.events[key] = eventIDs(events)
	p.mu.Unlock()
	return p.answer(ctx, events)
}

func (p *checkerProbe) callsOf(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[key]
}

func (p *checkerProbe) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		n += c
	}
	return n
}

func (p *checkerProbe) eventsOf(key string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.events[key]
}

// makeDue moves the due time of every pending transaction to the past, as
// if TXCheckTimeout (or the backoff delay) had passed.
func makeDue(t testing.TB, db *gorm.DB) {
	t.Helper()
	must(t, db.Exec("UPDATE ddd_transactions SET due_at = 0 WHERE state = ?", txPending).Error)
}

func testTxCheckerResolvesCrash(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	// The business data lives in a database of its own; the checker decides
	// by looking there, as a real one would.
	business := dbtest.SQLite(t).Open(t)
	must(t, business.AutoMigrate(&order{}))
	producer := newBus(t, db, "producer", eventbus.WithTXCheckTimeout(200*time.Millisecond))
	probe := newProbe(orderExists(business))
	must(t, producer.RegisterEventTXChecker(probe.check))
	if err := producer.RegisterEventTXChecker(probe.check); !errors.Is(err, eventbus.ErrHandlerRegistered) {
		t.Fatalf("second checker: err %v, want ErrHandlerRegistered", err)
	}
	if err := producer.RegisterEventTXChecker(nil); !errors.Is(err, eventbus.ErrInvalidHandler) && !errors.Is(err, eventbus.ErrHandlerRegistered) {
		t.Fatalf("nil checker: err %v, want an error", err)
	}
	consumer := newBus(t, tdb.Open(t), "consumer")
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(rec.handle))
	start(t, consumer)

	// Each order's process "crashes" after its local transaction ended and
	// before it called Commit or Rollback: the half message stays pending.
	crash := func(id string, commit bool) []*ddd.DomainEvent {
		evts := []*ddd.DomainEvent{mustEvent(t, id, 0), mustEvent(t, id, 1), mustEvent(t, id, 2)}
		tx := business.Begin()
		must(t, tx.Error)
		// The business transaction is on another database: the half
		// message is begun on its own (ctx does not carry tx).
		if _, err := producer.DispatchBegin(ctx, evts...); err != nil {
			t.Fatalf("DispatchBegin: %v", err)
		}
		must(t, tx.Create(&order{ID: id, Amount: 1}).Error)
		if commit {
			must(t, tx.Commit().Error)
		} else {
			must(t, tx.Rollback().Error)
		}
		return evts
	}
	committed := crash("crash-committed", true)
	rolledBack := crash("crash-rolled-back", false)

	resolved := 0
	waitFor(t, 10*time.Second, "the checker to resolve both", func() bool {
		n, err := producer.CheckTransactions(ctx)
		must(t, err)
		resolved += n
		return resolved == 2
	})
	for key, evts := range map[string][]*ddd.DomainEvent{"crash-committed": committed, "crash-rolled-back": rolledBack} {
		if probe.callsOf(key) != 1 {
			t.Errorf("%s: checker asked %d times, want 1", key, probe.callsOf(key))
		}
		// It saw every event of the transaction, in order.
		if got, want := fmt.Sprint(probe.eventsOf(key)), fmt.Sprint(eventIDs(evts)); got != want {
			t.Errorf("%s: checker saw %s, want %s", key, got, want)
		}
	}
	marker := dispatchN(t, producer, "marker", 0, 1)
	waitFor(t, 10*time.Second, "the committed transaction and the marker", func() bool { return rec.deliveries() >= 4 })
	waitCaughtUp(t, db, "consumer")
	rec.checkExactlyOnce(t, append(eventIDs(committed), marker...))
	if n := logCount(t, db, eventIDs(rolledBack)); n != 0 {
		t.Fatalf("%d events of the rolled-back transaction in the log", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transactions WHERE state = ?", txPending); n != 0 {
		t.Fatalf("%d transactions still pending", n)
	}
}

func testTxCheckerBackoff(t *testing.T, tdb *dbtest.Database) {
	const maxChecks = 3
	ctx := context.Background()
	db := tdb.Open(t)
	// A long timeout: the test moves due times itself, so nothing becomes
	// due behind its back.
	producer := newBus(t, db, "producer", eventbus.WithTXCheckTimeout(time.Minute),
		eventbus.WithTXCheckMaxChecks(maxChecks), eventbus.WithRetentionTime(0))
	probe := newProbe(func(ctx context.Context, events []*ddd.DomainEvent) (ddd.TXStatus, error) {
		switch events[0].Sender {
		case "answers-error":
			return ddd.TXCommit, errors.New("order service unreachable") // an error counts as unknown
		case "panics":
			panic("checker bug")
		}
		return ddd.TXUnknown, nil
	})
	must(t, producer.RegisterEventTXChecker(probe.check))
	keys := []string{"answers-unknown", "answers-error", "panics"}
	txIDs := map[string]int64{}
	txEvts := map[string][]*ddd.DomainEvent{}
	for _, k := range keys {
		evts := []*ddd.DomainEvent{mustEvent(t, k, 0), mustEvent(t, k, 1)}
		tctx, err := producer.DispatchBegin(ctx, evts...)
		must(t, err)
		txIDs[k], txEvts[k] = txIDOf(t, tctx), evts
	}
	if n, err := producer.CheckTransactions(ctx); err != nil || n != 0 || probe.total() != 0 {
		t.Fatalf("before the timeout: resolved %d (err %v), checker asked %d times; want nothing", n, err, probe.total())
	}

	for check := 1; check <= maxChecks; check++ {
		makeDue(t, db)
		n, err := producer.CheckTransactions(ctx)
		must(t, err)
		wantResolved := 0
		if check == maxChecks {
			wantResolved = len(keys) // marked unresolved
		}
		if n != wantResolved {
			t.Fatalf("check %d: resolved %d, want %d", check, n, wantResolved)
		}
		// Not asked again before the (growing) delay passes.
		if n, err := producer.CheckTransactions(ctx); err != nil || n != 0 {
			t.Fatalf("check %d repeated at once: resolved %d, err %v", check, n, err)
		}
		for _, k := range keys {
			if c := probe.callsOf(k); c != check {
				t.Fatalf("check %d: %s asked %d times", check, k, c)
			}
			var row struct {
				State      int
				CheckCount int
				Delay      int64
				LastError  string
			}
			must(t, db.Raw("SELECT state, check_count, due_at - updated_at AS delay, last_error FROM ddd_transactions WHERE id = ?", txIDs[k]).Scan(&row).Error)
			if row.CheckCount != check {
				t.Errorf("check %d: %s has check_count %d", check, k, row.CheckCount)
			}
			if check < maxChecks {
				// TXCheckTimeout doubled per check: 1m, then 2m. (PostgreSQL
				// reads its clock per column, so allow for a few ms.)
				want := (time.Minute << (check - 1)).Milliseconds()
				if row.State != txPending || row.Delay < want-1000 || row.Delay > want+1000 {
					t.Errorf("check %d: %s state %d, next check in %dms; want pending, in %dms", check, k, row.State, row.Delay, want)
				}
			} else if row.State != txUnresolved {
				t.Errorf("after %d checks: %s state %d, want unresolved", check, k, row.State)
			}
			wantErr := map[string]string{"answers-unknown": "unknown", "answers-error": "order service unreachable", "panics": "checker bug"}[k]
			if !strings.Contains(row.LastError, wantErr) {
				t.Errorf("check %d: %s last error %q, want it to mention %q", check, k, firstLineOf(row.LastError), wantErr)
			}
		}
	}

	// Unresolved: kept, counted, listed, never checked again, never cleaned.
	makeDue(t, db)
	if n, err := producer.CheckTransactions(ctx); err != nil || n != 0 || probe.total() != maxChecks*len(keys) {
		t.Fatalf("unresolved transactions checked again: resolved %d, err %v, %d calls", n, err, probe.total())
	}
	_, err := producer.Clean(ctx)
	must(t, err)
	if n, err := producer.CountUnresolvedTransactions(ctx); err != nil || n != 3 {
		t.Fatalf("CountUnresolvedTransactions = %d, %v; want 3", n, err)
	}
	page1, err := producer.UnresolvedTransactions(ctx, 0, 2)
	must(t, err)
	if len(page1) != 2 {
		t.Fatalf("first page has %d transactions, want 2", len(page1))
	}
	page2, err := producer.UnresolvedTransactions(ctx, page1[1].ID, 2)
	must(t, err)
	if len(page2) != 1 {
		t.Fatalf("second page has %d transactions, want 1", len(page2))
	}
	for _, u := range append(page1, page2...) {
		var key string
		for k, id := range txIDs {
			if id == u.ID {
				key = k
			}
		}
		if key == "" || u.Checks != maxChecks || u.LastError == "" || fmt.Sprint(eventIDs(u.Events)) != fmt.Sprint(eventIDs(txEvts[key])) {
			t.Errorf("unresolved %+v, want one of ours with %d checks, a last error and all its events", u, maxChecks)
		}
	}
	if _, err := producer.UnresolvedTransactions(ctx, 0, 0); !errors.Is(err, eventbus.ErrInvalidArgument) {
		t.Fatalf("limit 0: err %v, want ErrInvalidArgument", err)
	}

	// Resolved by hand.
	must(t, producer.CommitTransaction(ctx, txIDs["answers-unknown"]))
	must(t, producer.RollbackTransaction(ctx, txIDs["panics"]))
	if n := logCount(t, db, eventIDs(txEvts["answers-unknown"])); n != 2 {
		t.Fatalf("committing by hand published %d events, want 2", n)
	}
	if n := logCount(t, db, eventIDs(txEvts["panics"])); n != 0 {
		t.Fatalf("rolling back by hand published %d events", n)
	}
	if n, err := producer.CountUnresolvedTransactions(ctx); err != nil || n != 1 {
		t.Fatalf("CountUnresolvedTransactions = %d, %v; want 1", n, err)
	}
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func testTxNoChecker(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer", eventbus.WithTXCheckTimeout(time.Minute))
	evts := []*ddd.DomainEvent{mustEvent(t, "orphan", 0), mustEvent(t, "orphan", 1)}
	tctx, err := producer.DispatchBegin(ctx, evts...)
	must(t, err)
	id := txIDOf(t, tctx)
	makeDue(t, db)
	n, err := producer.CheckTransactions(ctx)
	must(t, err)
	if n != 1 || txState(t, db, id) != txUnresolved {
		t.Fatalf("resolved %d, state %d; want the transaction marked unresolved", n, txState(t, db, id))
	}
	list, err := producer.UnresolvedTransactions(ctx, 0, 10)
	must(t, err)
	if len(list) != 1 || list[0].ID != id || len(list[0].Events) != 2 || !strings.Contains(list[0].LastError, "no TX checker") {
		t.Fatalf("unresolved %+v, want transaction %d with its 2 events, saying there is no checker", list, id)
	}
	if n := logCount(t, db, eventIDs(evts)); n != 0 {
		t.Fatalf("%d events published without a decision", n)
	}
	// The producer comes back and finishes its work: the Commit still counts.
	must(t, producer.Commit(tctx))
	if n := logCount(t, db, eventIDs(evts)); n != 2 || txState(t, db, id) != txCommitted {
		t.Fatalf("late Commit: %d events published, state %d; want 2, committed", n, txState(t, db, id))
	}
}

// testTxCheckerExclusive: while one instance checks a transaction, another
// instance of the service does not; and instances checking at once ask
// about each transaction once.
func testTxCheckerExclusive(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	opts := []eventbus.Option{eventbus.WithTXCheckTimeout(time.Minute)}
	entered, release := make(chan struct{}), make(chan struct{})
	slow := newProbe(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) {
		entered <- struct{}{}
		<-release
		return ddd.TXCommit, nil
	})
	a := newBus(t, db, "producer", opts...)
	must(t, a.RegisterEventTXChecker(slow.check))
	fast := newProbe(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) { return ddd.TXRollback, nil })
	b := newBus(t, tdb.Open(t), "producer", opts...)
	must(t, b.RegisterEventTXChecker(fast.check))

	evts := []*ddd.DomainEvent{mustEvent(t, "contended", 0)}
	_, err := a.DispatchBegin(ctx, evts...)
	must(t, err)
	makeDue(t, db)
	done := make(chan error, 1)
	go func() { _, err := a.CheckTransactions(ctx); done <- err }()
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // a failed test must not leave the call blocked
	receive(t, entered, 20*time.Second, "the first instance's checker call")
	n, err := b.CheckTransactions(ctx)
	must(t, err)
	if n != 0 || fast.total() != 0 {
		t.Fatalf("second instance resolved %d and asked its checker %d times while the first was checking", n, fast.total())
	}
	releaseAll()
	must(t, <-done)
	if n := logCount(t, db, eventIDs(evts)); n != 1 {
		t.Fatalf("%d log rows after the first instance's commit, want 1", n)
	}

	// Several instances at once over many due transactions.
	counting := newProbe(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) { return ddd.TXCommit, nil })
	var instances []*eventbus.EventBus
	for range 3 {
		bus := newBus(t, tdb.Open(t), "producer", opts...)
		must(t, bus.RegisterEventTXChecker(counting.check))
		instances = append(instances, bus)
	}
	var all []string
	for i := range 20 {
		e := mustEvent(t, fmt.Sprintf("tx-%02d", i), 0)
		_, err := instances[0].DispatchBegin(ctx, e)
		must(t, err)
		all = append(all, e.ID)
	}
	makeDue(t, db)
	var wg sync.WaitGroup
	for _, bus := range instances {
		wg.Go(func() {
			if _, err := bus.CheckTransactions(ctx); err != nil {
				t.Errorf("CheckTransactions: %v", err)
			}
		})
	}
	wg.Wait()
	for i := range 20 {
		if c := counting.callsOf(fmt.Sprintf("tx-%02d", i)); c != 1 {
			t.Errorf("transaction %d asked about %d times, want 1", i, c)
		}
	}
	if n := logCount(t, db, all); n != int64(len(all)) {
		t.Fatalf("%d log rows for %d committed events", n, len(all))
	}
}

// testTxCheckerAllDue: one CheckTransactions call checks every due
// transaction, however many there are.
func testTxCheckerAllDue(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer", eventbus.WithTXCheckTimeout(time.Minute))
	probe := newProbe(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) { return ddd.TXRollback, nil })
	must(t, producer.RegisterEventTXChecker(probe.check))
	const txs = 120
	for i := range txs {
		_, err := producer.DispatchBegin(ctx, mustEvent(t, fmt.Sprintf("many-%03d", i), 0))
		must(t, err)
	}
	makeDue(t, db)
	n, err := producer.CheckTransactions(ctx)
	must(t, err)
	if n != txs || probe.total() != txs {
		t.Fatalf("one call resolved %d and asked %d times, want %d", n, probe.total(), txs)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transactions WHERE state = ?", txPending); n != 0 {
		t.Fatalf("%d transactions still pending", n)
	}
}

// testTxCheckerBackground runs the checker through Start on a producer-only
// instance: it resolves a crashed transaction on its own, and a checker
// that panics neither stops it nor the consumer.
func testTxCheckerBackground(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer", eventbus.WithTXCheckTimeout(200*time.Millisecond), eventbus.WithTXCheckMaxChecks(2))
	probe := newProbe(func(ctx context.Context, events []*ddd.DomainEvent) (ddd.TXStatus, error) {
		if events[0].Sender == "panics" {
			panic("checker bug")
		}
		return ddd.TXCommit, nil
	})
	must(t, producer.RegisterEventTXChecker(probe.check))
	start(t, producer)
	consumer := newBus(t, tdb.Open(t), "consumer")
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(rec.handle))
	start(t, consumer)

	panics := []*ddd.DomainEvent{mustEvent(t, "panics", 0)}
	_, err := producer.DispatchBegin(ctx, panics...)
	must(t, err)
	crashed := []*ddd.DomainEvent{mustEvent(t, "crashed", 0), mustEvent(t, "crashed", 1)}
	_, err = producer.DispatchBegin(ctx, crashed...)
	must(t, err)
	waitFor(t, 15*time.Second, "the crashed transaction's events", func() bool { return rec.deliveries() >= 2 })
	waitFor(t, 15*time.Second, "the panicking check to end unresolved", func() bool {
		n, err := producer.CountUnresolvedTransactions(ctx)
		return err == nil && n == 1
	})
	if c := probe.callsOf("panics"); c != 2 {
		t.Fatalf("panicking checker asked %d times, want TXCheckMaxChecks = 2", c)
	}
	// Everything still runs.
	later := dispatchN(t, producer, "later", 0, 1)
	waitFor(t, 10*time.Second, "an event dispatched afterwards", func() bool { return rec.deliveries() >= 3 })
	rec.checkExactlyOnce(t, append(eventIDs(crashed), later...))
}
