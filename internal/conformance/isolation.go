package conformance

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// The bus states the isolation level of everything it runs, so a server,
// role or DSN whose default is REPEATABLE READ or SERIALIZABLE changes
// nothing. On PostgreSQL at those levels a statement whose row was updated
// by a transaction that committed after the statement began fails with
// SQLSTATE 40001 instead of waiting and reading the new version; these
// tests make that happen to the bus's single statements on purpose.
// (TestConformanceSerializable runs the whole suite at SERIALIZABLE.)
func init() {
	register("IsolationOffsetCommitAfterRowLockAtSerializable", testIsolationOffsetCommit)
	register("IsolationTxClaimAfterRowLockAtSerializable", testIsolationTxClaim)
	register("IsolationReadUncommittedDefaultReadsOnlyCommitted", testIsolationReadUncommitted)
}

// openSerializable returns a new pool whose every connection defaults to
// SERIALIZABLE; SQLite has no levels (the test skips).
func openSerializable(t testing.TB, tdb *dbtest.Database) *gorm.DB {
	return openAtLevel(t, tdb, "SERIALIZABLE")
}

// openAtLevel returns a new pool whose every connection defaults to level
// ("READ UNCOMMITTED", "SERIALIZABLE", ...).
func openAtLevel(t testing.TB, tdb *dbtest.Database, level string) *gorm.DB {
	t.Helper()
	switch tdb.Dialect {
	case "sqlite":
		t.Skip("SQLite has no isolation levels to choose")
	case "mysql":
		// transaction_isolation: MySQL 8 and MariaDB 11.1+; tx_isolation before.
		name := "transaction_isolation"
		if tdb.Open(t).Exec("SELECT @@transaction_isolation").Error != nil {
			name = "tx_isolation"
		}
		return tdb.OpenSession(t, map[string]string{name: "'" + strings.ReplaceAll(level, " ", "-") + "'"})
	}
	return tdb.OpenSession(t, map[string]string{"default_transaction_isolation": strings.ToLower(level)})
}

// commit ends the holder's transaction with a commit.
func (h *holder) commit(t testing.TB) {
	t.Helper()
	h.done = true
	must(t, h.tx.Commit().Error)
}

// testIsolationOffsetCommit: a consumer's offset commit waits for another
// transaction that updated its service's row, which then commits. The
// commit must go through: no failed poll, nothing delivered twice.
func testIsolationOffsetCommit(t *testing.T, tdb *dbtest.Database) {
	sdb := openSerializable(t, tdb)
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	sink := newLogSink()
	bus, rec := startRecording(t, sdb, "iso", eventbus.WithLogger(sink.logger()))
	ids := dispatchN(t, producer, "first", 0, 5)
	waitCaughtUp(t, db, "iso")

	h := holdLocks(t, tdb, "UPDATE ddd_services SET updated_at = updated_at + 1 WHERE name = 'iso'")
	ids = append(ids, dispatchN(t, producer, "second", 0, 5)...)
	bus.Notify()
	waitFor(t, 10*time.Second, "the offset commit to wait for the held row", func() bool {
		return h.blocking(t, db, tdb.Dialect, "UPDATE ddd_services")
	})
	h.commit(t)
	waitCaughtUp(t, db, "iso")
	if n := sink.count("poll failed"); n > 0 {
		t.Errorf("%d polls failed; last error: %s", n, sink.attr("poll failed", "err"))
	}
	rec.checkExactlyOnce(t, ids)
}

// testIsolationTxClaim: the TX checker's claim of a due transaction waits
// for another transaction that updated that row, which then commits. The
// check must go through.
func testIsolationTxClaim(t *testing.T, tdb *dbtest.Database) {
	sdb := openSerializable(t, tdb)
	db := tdb.Open(t)
	producer := newBus(t, db, "iso-tx")
	_, err := producer.DispatchBegin(context.Background(), mustEvent(t, "pending", 0))
	must(t, err)
	makeDue(t, db)
	id := count(t, db, "SELECT id FROM ddd_transactions WHERE state = ?", txPending)

	checker := newBus(t, sdb, "iso-tx")
	must(t, checker.RegisterEventTXChecker(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) {
		return ddd.TXCommit, nil
	}))
	h := holdLocks(t, tdb, "UPDATE ddd_transactions SET updated_at = updated_at + 1 WHERE id = "+itoa64(id))
	type checked struct {
		n   int
		err error
	}
	done := make(chan checked, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := checker.CheckTransactions(ctx)
		done <- checked{n, err}
	}()
	waitFor(t, 10*time.Second, "the claim to wait for the held row", func() bool {
		return h.blocking(t, db, tdb.Dialect, "UPDATE ddd_transactions")
	})
	h.commit(t)
	res := <-done
	if res.err != nil || res.n != 1 {
		t.Fatalf("CheckTransactions = %d, %v; want 1, nil", res.n, res.err)
	}
	if s := txState(t, db, id); s != txCommitted {
		t.Errorf("transaction state %d, want committed (%d)", s, txCommitted)
	}
}

// testIsolationReadUncommitted: a consumer whose connections default to
// READ UNCOMMITTED reads only committed events. An open transaction holds
// an event row that already has the next sequence number (as a sequencer
// batch that may still roll back would); a committed event sequenced the
// same is delivered, the uncommitted one never is.
func testIsolationReadUncommitted(t *testing.T, tdb *dbtest.Database) {
	if tdb.Dialect == "postgres" {
		t.Skip("PostgreSQL runs READ UNCOMMITTED as READ COMMITTED")
	}
	udb := openAtLevel(t, tdb, "READ UNCOMMITTED")
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	bus, rec := startRecording(t, udb, "iso-ru")
	ids := dispatchN(t, producer, "first", 0, 1)
	waitCaughtUp(t, db, "iso-ru")

	next := count(t, db, "SELECT last_seq + 1 FROM ddd_sequencer WHERE id = 1")
	held := mustEvent(t, "uncommitted", 0)
	h := holdLocks(t, tdb, "INSERT INTO ddd_events (event_id, event_type, sender, send_type, payload, occurred_at, created_at, seq)"+
		" VALUES ('"+held.ID+"', '"+held.Type+"', 'uncommitted', 1, '{}', 0, 0, "+itoa64(next)+")")
	ids = append(ids, dispatchN(t, producer, "second", 0, 1)...)
	bus.Notify()
	// A consumer that read the uncommitted row moved its offset past the
	// committed event's number: it never gets it.
	waitFor(t, 10*time.Second, "the committed event", func() bool { return rec.count1(ids[1]) })
	if rec.count1(held.ID) {
		t.Errorf("the consumer handled event %s of a transaction that had not committed", held.ID)
	}
	h.release(t)
	rec.checkExactlyOnce(t, ids)
}
