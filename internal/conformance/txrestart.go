package conformance

import (
	"context"
	"testing"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// TxIDsAcrossRestart checks on a private server what the README says of
// ids: a committed transaction's or event's id is never handed out again,
// even after its row was deleted and the server restarted cleanly; the id
// of a transaction still open at a crash may be (it is logged whether it
// was), and the context of that transaction then still resolves nothing
// but its own.
//
// Like ServerRestart it is not registered in the suite: it needs a server
// of its own and runs in the restart CI step.
func TxIDsAcrossRestart(t *testing.T, srv *dbtest.Server) {
	ctx := context.Background()
	tdb := srv.NewDatabase(t)
	db := tdb.Open(t)
	bus := newBus(t, db, "producer")
	// After a restart, a new pool and bus, as a restarted process has.
	reopen := func() {
		db = tdb.Open(t)
		bus = newBus(t, db, "producer")
	}
	var maxTx int64
	for i := range 3 {
		tctx, err := bus.DispatchBegin(ctx, mustEvent(t, "committed", i))
		must(t, err)
		must(t, bus.Commit(tctx))
		maxTx = txIDOf(t, tctx)
	}
	dispatchN(t, bus, "plain", 0, 3)
	maxEvent := count(t, db, "SELECT MAX(id) FROM ddd_events")
	// Emptied, as the cleaner would, and the server restarted cleanly.
	must(t, db.Exec("DELETE FROM ddd_transactions").Error)
	must(t, db.Exec("DELETE FROM ddd_events").Error)
	srv.Stop(t)
	srv.Start(t)
	reopen()
	tctx, err := bus.DispatchBegin(ctx, mustEvent(t, "after-restart", 0))
	must(t, err)
	must(t, bus.Commit(tctx))
	if id := txIDOf(t, tctx); id <= maxTx {
		t.Errorf("after a clean restart a transaction got id %d, at or below the deleted %d", id, maxTx)
	}
	if id := count(t, db, "SELECT MAX(id) FROM ddd_events"); id <= maxEvent {
		t.Errorf("after a clean restart an event got id %d, at or below the deleted %d", id, maxEvent)
	}

	// A crash while a business transaction that began a transactional
	// message is still open.
	open := db.Begin()
	must(t, open.Error)
	pending, err := bus.DispatchBegin(ddd.ContextWithTx(ctx, open), mustEvent(t, "open-at-crash", 0))
	must(t, err)
	srv.Crash(t)
	srv.Start(t)
	reopen()
	next, err := bus.DispatchBegin(ctx, mustEvent(t, "after-crash", 0))
	must(t, err)
	lost, got := txIDOf(t, pending), txIDOf(t, next)
	t.Logf("%s: the transaction open at the crash had id %d; the next one got %d (reused: %t)", srv.Dialect, lost, got, got <= lost)
	// The first request comes back late: it resolves nothing of the next.
	must(t, bus.Rollback(pending))
	if s := txState(t, db, got); s != txPending {
		t.Fatalf("the late Rollback changed transaction %d to state %d", got, s)
	}
	must(t, bus.Commit(next))
}
