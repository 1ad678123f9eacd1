package conformance

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

func init() {
	register("TxCommitRollbackIdempotent", testTxCommitRollback)
	register("TxLateCommitReachesConsumerPastIt", testTxLateCommit)
	register("TxEngineTwoPhaseFlow", testTxEngineFlow)
	register("TxConcurrentResolutionsPublishOnce", testTxConcurrentResolutions)
	register("TxLargeTransactionKeepsOrder", testTxLarge)
}

// Transaction states as stored.
const (
	txPending    = 0
	txCommitted  = 1
	txRolledBack = 2
	txUnresolved = 3
)

func txState(t testing.TB, db *gorm.DB, id int64) int {
	t.Helper()
	return int(count(t, db, "SELECT state FROM ddd_transactions WHERE id = ?", id))
}

func txIDOf(t testing.TB, ctx context.Context) int64 {
	t.Helper()
	id, ok := eventbus.TxID(ctx)
	if !ok || id <= 0 {
		t.Fatalf("DispatchBegin returned a context without a transaction id (%d, %t)", id, ok)
	}
	return id
}

func eventIDs(evts []*ddd.DomainEvent) []string {
	out := make([]string, len(evts))
	for i, e := range evts {
		out[i] = e.ID
	}
	return out
}

// logCount is how many log rows carry one of the event IDs.
func logCount(t testing.TB, db *gorm.DB, ids []string) int64 {
	t.Helper()
	return count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE event_id IN ?", ids)
}

// keeper is a handler that keeps a copy of every event it is given.
type keeper struct{ seen sync.Map }

func (k *keeper) wrap(h ddd.DomainEventHandler) ddd.DomainEventHandler {
	return func(ctx context.Context, evt *ddd.DomainEvent) error {
		k.seen.Store(evt.ID, evt)
		return h(ctx, evt)
	}
}

func (k *keeper) get(id string) *ddd.DomainEvent {
	v, _ := k.seen.Load(id)
	e, _ := v.(*ddd.DomainEvent)
	return e
}

func sameEvent(a, b *ddd.DomainEvent) bool {
	return a != nil && b != nil && a.ID == b.ID && a.Type == b.Type && a.Sender == b.Sender && a.SendType == b.SendType &&
		string(a.Payload) == string(b.Payload) && reflect.DeepEqual(a.Metadata, b.Metadata) &&
		a.CreatedAt.UnixMicro() == b.CreatedAt.UnixMicro()
}

func testTxCommitRollback(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	consumer := newBus(t, tdb.Open(t), "consumer")
	rec := newRecorder()
	var kept keeper
	must(t, consumer.RegisterEventHandler(kept.wrap(rec.handle)))
	start(t, consumer)

	// Bad input writes nothing.
	if _, err := producer.DispatchBegin(ctx); !errors.Is(err, eventbus.ErrInvalidEvent) {
		t.Fatalf("DispatchBegin(): err %v, want ErrInvalidEvent", err)
	}
	if _, err := producer.DispatchBegin(ctx, mustEvent(t, "tx-bad", 0), &ddd.DomainEvent{ID: "x"}); !errors.Is(err, eventbus.ErrInvalidEvent) {
		t.Fatalf("DispatchBegin(invalid): err %v, want ErrInvalidEvent", err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transactions"); n != 0 {
		t.Fatalf("%d transactions stored after invalid input", n)
	}
	if err := producer.Commit(ctx); !errors.Is(err, eventbus.ErrNoTransaction) {
		t.Fatalf("Commit without a transaction: err %v, want ErrNoTransaction", err)
	}
	if err := producer.Rollback(ctx); !errors.Is(err, eventbus.ErrNoTransaction) {
		t.Fatalf("Rollback without a transaction: err %v, want ErrNoTransaction", err)
	}

	committed := []*ddd.DomainEvent{
		mustEvent(t, "tx-c", 0, ddd.WithMetadata("trace", "t-1")),
		mustEvent(t, "tx-c", 1, ddd.WithSendType(ddd.SendTransaction)),
		mustEvent(t, "tx-c", 2, ddd.WithSendType(ddd.SendFIFO)),
	}
	rolledBack := []*ddd.DomainEvent{mustEvent(t, "tx-r", 0), mustEvent(t, "tx-r", 1)}
	cctx, err := producer.DispatchBegin(ctx, committed...)
	must(t, err)
	rctx, err := producer.DispatchBegin(ctx, rolledBack...)
	must(t, err)
	cid, rid := txIDOf(t, cctx), txIDOf(t, rctx)
	if txState(t, db, cid) != txPending || txState(t, db, rid) != txPending {
		t.Fatal("transactions are not pending after DispatchBegin")
	}

	// Pending events are invisible: a marker dispatched after them arrives alone.
	marker := dispatchN(t, producer, "marker", 0, 1)
	waitCaughtUp(t, db, "consumer")
	if got := rec.deliveries(); got != 1 {
		t.Fatalf("%d deliveries while the transactions are pending, want only the marker", got)
	}
	if n := logCount(t, db, append(eventIDs(committed), eventIDs(rolledBack)...)); n != 0 {
		t.Fatalf("%d pending events in the log, want 0", n)
	}

	// Only the service that began a transaction resolves it.
	if err := consumer.CommitTransaction(ctx, cid); !errors.Is(err, eventbus.ErrTxOtherService) {
		t.Fatalf("another service's CommitTransaction: err %v, want ErrTxOtherService", err)
	}
	if err := consumer.Rollback(cctx); !errors.Is(err, eventbus.ErrTxOtherService) {
		t.Fatalf("another service's Rollback: err %v, want ErrTxOtherService", err)
	}
	if txState(t, db, cid) != txPending {
		t.Fatal("another service's calls changed the transaction")
	}

	must(t, producer.Commit(cctx))
	must(t, producer.Commit(cctx))                // a second call is a no-op
	must(t, producer.CommitTransaction(ctx, cid)) // so is committing it by hand
	if err := producer.Rollback(cctx); !errors.Is(err, eventbus.ErrTxCommitted) {
		t.Fatalf("Rollback after Commit: err %v, want ErrTxCommitted", err)
	}
	must(t, producer.Rollback(rctx))
	must(t, producer.Rollback(rctx))
	if err := producer.Commit(rctx); !errors.Is(err, eventbus.ErrTxRolledBack) {
		t.Fatalf("Commit after Rollback: err %v, want ErrTxRolledBack", err)
	}
	if err := producer.CommitTransaction(ctx, rid+cid+1000); !errors.Is(err, eventbus.ErrTxNotFound) {
		t.Fatalf("CommitTransaction(unknown): err %v, want ErrTxNotFound", err)
	}
	must(t, producer.RollbackTransaction(ctx, rid+cid+1000)) // nothing to discard

	// A second marker: once it arrives, anything published before it has too.
	marker = append(marker, dispatchN(t, producer, "marker", 1, 1)...)
	waitFor(t, 10*time.Second, "the committed events and markers", func() bool { return rec.deliveries() >= 5 })
	waitCaughtUp(t, db, "consumer")
	rec.checkExactlyOnce(t, append(eventIDs(committed), marker...))
	for _, want := range committed {
		if got := kept.get(want.ID); !sameEvent(got, want) {
			t.Errorf("delivered %+v, want %+v", got, want)
		}
	}
	if n := logCount(t, db, eventIDs(committed)); n != 3 {
		t.Fatalf("committed events stored %d times, want 3 rows", n)
	}
	if n := logCount(t, db, eventIDs(rolledBack)); n != 0 {
		t.Fatalf("%d rolled-back events in the log", n)
	}
	if txState(t, db, cid) != txCommitted || txState(t, db, rid) != txRolledBack {
		t.Fatalf("states %d, %d; want committed, rolled back", txState(t, db, cid), txState(t, db, rid))
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transaction_events"); n != 0 {
		t.Fatalf("%d events of resolved transactions left in the staging table", n)
	}
}

func testTxLateCommit(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	consumer := newBus(t, tdb.Open(t), "consumer")
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(rec.handle))
	start(t, consumer)

	txEvents := []*ddd.DomainEvent{mustEvent(t, "late", 0), mustEvent(t, "late", 1)}
	tctx, err := producer.DispatchBegin(ctx, txEvents...)
	must(t, err)
	// Many events are stored, sequenced and consumed meanwhile: the consumer's
	// offset passes every id and seq given out so far.
	var normal []string
	for i := range 5 {
		var evts []*ddd.DomainEvent
		for k := range 10 {
			evts = append(evts, mustEvent(t, senderName(k), i))
		}
		must(t, producer.Dispatch(ctx, evts...))
		normal = append(normal, eventIDs(evts)...)
	}
	waitFor(t, 10*time.Second, "the normal events", func() bool { return rec.deliveries() >= len(normal) })
	waitCaughtUp(t, db, "consumer")
	maxID := count(t, db, "SELECT MAX(id) FROM ddd_events")
	offset := count(t, db, "SELECT consumed_seq FROM ddd_services WHERE name = 'consumer'")

	must(t, producer.Commit(tctx))
	waitFor(t, 10*time.Second, "the late transaction's events", func() bool { return rec.deliveries() >= len(normal)+2 })
	waitCaughtUp(t, db, "consumer")
	rec.checkExactlyOnce(t, append(normal, eventIDs(txEvents)...))
	// They entered the log as new entries, after everything already passed.
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE event_id IN ? AND id > ? AND seq > ?",
		eventIDs(txEvents), maxID, offset); n != 2 {
		t.Fatalf("%d of the transaction's events are new log entries past id %d and seq %d, want 2", n, maxID, offset)
	}
}

// testTxEngineFlow runs SendTransaction events through the engine, with the
// business data in another database than the event store (the case
// transactional messages exist for) and in the same one.
func testTxEngineFlow(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	bus := newBus(t, db, "orders")
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	start(t, bus)

	// The business database is a SQLite file of its own. A deferred foreign
	// key lets a command succeed and its COMMIT fail: only then has the
	// engine begun the two-phase message, and it must roll it back.
	other := dbtest.SQLite(t).Open(t)
	must(t, other.Exec("CREATE TABLE parents (id TEXT PRIMARY KEY)").Error)
	must(t, other.Exec("CREATE TABLE children (id TEXT PRIMARY KEY, parent_id TEXT REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)").Error)
	failAtCommit := func(tx *gorm.DB, id string) error {
		return tx.Exec("INSERT INTO children (id, parent_id) VALUES (?, 'missing')", id).Error
	}
	// In the event store's own database a failing command rolls back the
	// business transaction before any message is begun.
	boom := errors.New("payment declined")
	failCommand := func(*gorm.DB, string) error { return boom }

	var delivered, lost []string
	for _, c := range []struct {
		name string
		db   *gorm.DB
		fail func(tx *gorm.DB, id string) error
	}{{"other-db", other, failAtCommit}, {"same-db", db, failCommand}} {
		eng := newEngine(t, c.db, bus)
		place := func(id string, fail func(*gorm.DB, string) error) (*ddd.DomainEvent, error) {
			evt := mustEvent(t, id, 0, ddd.WithSendType(ddd.SendTransaction))
			return evt, eng.Run(ctx, func(ctx context.Context, uow *ddd.UnitOfWork) error {
				uow.Raise(evt)
				if err := uow.Tx().Create(&order{ID: id, Amount: 1}).Error; err != nil {
					return err
				}
				if fail != nil {
					return fail(uow.Tx(), id)
				}
				return nil
			})
		}
		ok, err := place(c.name+"-ok", nil)
		must(t, err)
		failed, err := place(c.name+"-failed", c.fail)
		if err == nil {
			t.Fatalf("%s: the failing command succeeded", c.name)
		}
		if n := count(t, c.db, "SELECT COUNT(*) FROM orders WHERE id = ?", c.name+"-failed"); n != 0 {
			t.Fatalf("%s: the failed order was stored", c.name)
		}
		marker := mustEvent(t, c.name+"-marker", 0)
		must(t, bus.Dispatch(ctx, marker))
		delivered = append(delivered, ok.ID, marker.ID)
		lost = append(lost, failed.ID)
		waitFor(t, 10*time.Second, c.name+": the committed order's event", func() bool { return rec.deliveries() >= len(delivered) })
	}
	waitCaughtUp(t, db, "orders")
	rec.checkExactlyOnce(t, delivered)
	if n := logCount(t, db, lost); n != 0 {
		t.Fatalf("%d events of failed orders in the log", n)
	}
	// Nothing is left pending: the other database's failed order had a
	// durable half message, rolled back; the same-database one never began.
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transactions WHERE state = ?", txCommitted); n != 2 {
		t.Fatalf("%d committed transactions, want 2", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transactions WHERE state = ?", txRolledBack); n != 1 {
		t.Fatalf("%d rolled-back transactions, want 1", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transactions WHERE state IN (?, ?)", txPending, txUnresolved); n != 0 {
		t.Fatalf("%d transactions left pending or unresolved", n)
	}
}

// testTxConcurrentResolutions races Commit against Commit and Rollback from
// separate pools (processes): exactly one resolution wins, the losers learn
// what happened, and a committed transaction is in the log exactly once.
func testTxConcurrentResolutions(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	buses := []*eventbus.EventBus{newBus(t, db, "producer"), newBus(t, tdb.Open(t), "producer"), newBus(t, tdb.Open(t), "producer")}
	const txs = 8
	type txCase struct {
		id   int64
		evts []*ddd.DomainEvent
	}
	var cases []txCase
	for i := range txs {
		evts := []*ddd.DomainEvent{mustEvent(t, fmt.Sprintf("race-%d", i), 0), mustEvent(t, fmt.Sprintf("race-%d", i), 1)}
		tctx, err := buses[0].DispatchBegin(ctx, evts...)
		must(t, err)
		cases = append(cases, txCase{id: txIDOf(t, tctx), evts: evts})
	}
	errs := make([][3]error, txs)
	var wg sync.WaitGroup
	for i, c := range cases {
		for j, b := range buses {
			wg.Go(func() {
				if j == 2 && i%2 == 0 {
					errs[i][j] = b.RollbackTransaction(ctx, c.id)
				} else {
					errs[i][j] = b.CommitTransaction(ctx, c.id)
				}
			})
		}
	}
	wg.Wait()
	for i, c := range cases {
		state := txState(t, db, c.id)
		rows := logCount(t, db, eventIDs(c.evts))
		switch {
		case state == txCommitted && rows == 2:
			for j, err := range errs[i] {
				if err != nil && !(j == 2 && i%2 == 0 && errors.Is(err, eventbus.ErrTxCommitted)) {
					t.Errorf("tx %d committed, but call %d returned %v", c.id, j, err)
				}
			}
		case state == txRolledBack && rows == 0 && i%2 == 0:
			if errs[i][2] != nil {
				t.Errorf("tx %d rolled back, but the Rollback returned %v", c.id, errs[i][2])
			}
			for _, err := range errs[i][:2] {
				if !errors.Is(err, eventbus.ErrTxRolledBack) {
					t.Errorf("tx %d rolled back, but a Commit returned %v", c.id, err)
				}
			}
		default:
			t.Errorf("tx %d: state %d with %d log rows (calls returned %v)", c.id, state, rows, errs[i])
		}
	}
}

// testTxLarge: a transaction of more events than one insert chunk is
// stored whole, shown whole to the checker, and published in its order.
func testTxLarge(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer", eventbus.WithTXCheckTimeout(time.Minute))
	var seen []string
	must(t, producer.RegisterEventTXChecker(func(ctx context.Context, events []*ddd.DomainEvent) (ddd.TXStatus, error) {
		seen = eventIDs(events)
		return ddd.TXCommit, nil
	}))
	var evts []*ddd.DomainEvent
	for i := range 1100 {
		evts = append(evts, mustEvent(t, fmt.Sprintf("big-%d", i%7), i))
	}
	_, err := producer.DispatchBegin(ctx, evts...)
	must(t, err)
	makeDue(t, db)
	if n, err := producer.CheckTransactions(ctx); err != nil || n != 1 {
		t.Fatalf("CheckTransactions = %d, %v; want 1", n, err)
	}
	if fmt.Sprint(seen) != fmt.Sprint(eventIDs(evts)) {
		t.Fatalf("the checker saw %d events, want all %d in order", len(seen), len(evts))
	}
	var logged []string
	must(t, db.Raw("SELECT event_id FROM ddd_events ORDER BY id").Scan(&logged).Error)
	if fmt.Sprint(logged) != fmt.Sprint(eventIDs(evts)) {
		t.Fatalf("the log holds %d events, want all %d in the transaction's order", len(logged), len(evts))
	}
}
