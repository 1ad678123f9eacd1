package conformance

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

func init() {
	register("TxContextResolvesOnlyItsOwn", testTxContextResolvesOnlyItsOwn)
	register("TxAnswersAfterCleaning", testTxAnswersAfterCleaning)
	register("TxCleanedMarkAfterUpgrade", testTxCleanedMarkAfterUpgrade)
}

// beginIn runs DispatchBegin inside a business transaction on the bus's
// database and ends that transaction with commit or rollback.
func beginIn(t testing.TB, db *gorm.DB, bus *eventbus.EventBus, commit bool, evts ...*ddd.DomainEvent) context.Context {
	t.Helper()
	tx := db.Begin()
	must(t, tx.Error)
	tctx, err := bus.DispatchBegin(ddd.ContextWithTx(context.Background(), tx), evts...)
	must(t, err)
	if !bus.BegunInTx(tctx) {
		t.Fatal("DispatchBegin with a transaction on the bus's database did not write with it")
	}
	if commit {
		must(t, tx.Commit().Error)
	} else {
		must(t, tx.Rollback().Error)
	}
	return tctx
}

// restartTxIDs makes the next transaction id be id, as after a server
// crash that lost the counter of a value only a rolled-back transaction
// had used (SQLite needs nothing: its counter rolls back with it).
func restartTxIDs(t testing.TB, db *gorm.DB, dialect string, id int64) {
	t.Helper()
	switch dialect {
	case "postgres":
		must(t, db.Exec("ALTER TABLE ddd_transactions ALTER COLUMN id RESTART WITH "+strconv.FormatInt(id, 10)).Error)
	case "mysql":
		must(t, db.Exec("ALTER TABLE ddd_transactions AUTO_INCREMENT = "+strconv.FormatInt(id, 10)).Error)
	}
}

// testTxContextResolvesOnlyItsOwn: a request's business transaction rolls
// back after DispatchBegin; another request then gets the same id (SQLite
// hands it out again at once; MySQL and PostgreSQL may after a crash,
// simulated here). The first request's late Rollback or Commit must not
// touch the second request's transaction.
func testTxContextResolvesOnlyItsOwn(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	consumer := newBus(t, tdb.Open(t), "consumer")
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(rec.handle))
	start(t, consumer)

	first := beginIn(t, db, producer, false, mustEvent(t, "first", 0))
	id := txIDOf(t, first)
	restartTxIDs(t, db, tdb.Dialect, id)
	secondEvts := []*ddd.DomainEvent{mustEvent(t, "second", 0), mustEvent(t, "second", 1)}
	second := beginIn(t, db, producer, true, secondEvts...)
	if got := txIDOf(t, second); got != id {
		t.Fatalf("the second transaction got id %d, want the first one's %d again (the test needs the reuse)", got, id)
	}

	// The first request's late calls find that its own transaction never
	// became durable.
	must(t, producer.Rollback(first))
	if err := producer.Commit(first); !errors.Is(err, eventbus.ErrTxNotFound) {
		t.Fatalf("Commit of the rolled-back request: err %v, want ErrTxNotFound", err)
	}
	if s := txState(t, db, id); s != txPending {
		t.Fatalf("after the first request's calls the second request's transaction is in state %d, want pending", s)
	}
	must(t, producer.Commit(second))
	marker := dispatchN(t, producer, "marker", 0, 1)
	waitFor(t, 10*time.Second, "the second request's events and the marker", func() bool { return rec.deliveries() >= 3 })
	waitCaughtUp(t, db, "consumer")
	rec.checkExactlyOnce(t, append(eventIDs(secondEvts), marker...))
	// The first request keeps its answers; an operator acts by id.
	must(t, producer.Rollback(first))
	if err := producer.RollbackTransaction(context.Background(), id); !errors.Is(err, eventbus.ErrTxCommitted) {
		t.Fatalf("RollbackTransaction(%d): err %v, want ErrTxCommitted", id, err)
	}
}

// testTxAnswersAfterCleaning: once the cleaner removed a resolved
// transaction, no call reports success for a resolution it cannot check;
// a transaction that never became durable is still told apart.
func testTxAnswersAfterCleaning(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer", eventbus.WithRetentionTime(0))
	committed, err := producer.DispatchBegin(ctx, mustEvent(t, "committed", 0))
	must(t, err)
	must(t, producer.Commit(committed))
	rolledBack, err := producer.DispatchBegin(ctx, mustEvent(t, "rolled-back", 0))
	must(t, err)
	must(t, producer.Rollback(rolledBack))
	must(t, db.Exec("UPDATE ddd_transactions SET updated_at = updated_at - ?", twoHours).Error) // past RetentionTime 0 at once
	rep, err := producer.Clean(ctx)
	must(t, err)
	if rep.Transactions != 2 {
		t.Fatalf("the cleaner removed %d transactions, want 2", rep.Transactions)
	}

	for name, tctx := range map[string]context.Context{"committed": committed, "rolled back": rolledBack} {
		id := txIDOf(t, tctx)
		for call, err := range map[string]error{
			"Commit":              producer.Commit(tctx),
			"Rollback":            producer.Rollback(tctx),
			"CommitTransaction":   producer.CommitTransaction(ctx, id),
			"RollbackTransaction": producer.RollbackTransaction(ctx, id),
		} {
			if !errors.Is(err, eventbus.ErrTxCleaned) {
				t.Errorf("%s of the cleaned %s transaction: err %v, want ErrTxCleaned", call, name, err)
			}
		}
	}
	// Begun after the cleaning, rolled back with its business transaction:
	// it never existed, and a rollback has nothing to discard.
	never := beginIn(t, db, producer, false, mustEvent(t, "never", 0))
	must(t, producer.Rollback(never))
	if err := producer.Commit(never); !errors.Is(err, eventbus.ErrTxNotFound) {
		t.Fatalf("Commit of a transaction that never became durable: err %v, want ErrTxNotFound", err)
	}
	// A new transaction resolves as usual.
	fresh, err := producer.DispatchBegin(ctx, mustEvent(t, "fresh", 0))
	must(t, err)
	must(t, producer.Commit(fresh))
	must(t, producer.Commit(fresh))
	if err := producer.Rollback(fresh); !errors.Is(err, eventbus.ErrTxCommitted) {
		t.Fatalf("Rollback after Commit: err %v, want ErrTxCommitted", err)
	}
}

// testTxCleanedMarkAfterUpgrade: a store whose cleaner removed transactions
// before migration 0006 recorded the cleaner's mark. The migration starts
// the mark at the highest id handed out, so those transactions are not
// reported as never having existed.
func testTxCleanedMarkAfterUpgrade(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	var ids []int64
	for i := range 5 {
		tctx, err := producer.DispatchBegin(ctx, mustEvent(t, "old", i))
		must(t, err)
		must(t, producer.Commit(tctx))
		ids = append(ids, txIDOf(t, tctx))
	}
	// Back to the schema before 0006, with the newest three cleaned.
	must(t, db.Exec("DROP TABLE ddd_cleaned").Error)
	must(t, db.Exec("ALTER TABLE ddd_transactions DROP COLUMN token").Error)
	must(t, db.Exec("ALTER TABLE ddd_services DROP COLUMN standby_until").Error)
	must(t, db.Exec("DELETE FROM ddd_schema_migrations WHERE version = 6").Error)
	must(t, db.Exec("DELETE FROM ddd_transactions WHERE id >= ?", ids[2]).Error)
	must(t, eventbus.Migrate(ctx, db, "ddd_"))

	upgraded := newBus(t, tdb.Open(t), "producer")
	for _, id := range ids[2:] {
		if err := upgraded.RollbackTransaction(ctx, id); !errors.Is(err, eventbus.ErrTxCleaned) {
			t.Errorf("RollbackTransaction(%d) of a transaction cleaned before the upgrade: err %v, want ErrTxCleaned", id, err)
		}
	}
	for _, id := range ids[:2] {
		must(t, upgraded.CommitTransaction(ctx, id)) // still stored: committed
	}
	if err := upgraded.RollbackTransaction(ctx, ids[4]+1000); err != nil {
		t.Fatalf("RollbackTransaction of an id never handed out: err %v, want nil", err)
	}
}
