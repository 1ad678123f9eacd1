package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

func init() {
	register("TxEngineCommitOutcomeUnknown", testTxEngineCommitOutcomeUnknown)
}

// testTxEngineCommitOutcomeUnknown runs SendTransaction events through the
// engine while a proxy breaks the business transaction's COMMIT: either
// the server commits and only its reply is lost, or the COMMIT never
// arrives and the server rolls back. The client sees the same error both
// times. A committed order's event is published exactly once; a rolled
// back one's never, and a half message written with it is never seen by
// the checker. Two layouts: the half message written with the business
// transaction (one pool), and made durable by the bus on its own (the
// business rows on another database of the same server, which the bus
// refuses to write to).
func testTxEngineCommitOutcomeUnknown(t *testing.T, tdb *dbtest.Database) {
	if tdb.Addr == "" {
		t.Skip("SQLite is embedded: a COMMIT's reply cannot be lost")
	}
	ctx := context.Background()
	db := tdb.Open(t)
	proxy := dbtest.NewProxy(t, tdb.Addr)
	via := tdb.OpenVia(t, proxy.Addr())
	other := anotherDatabase(t, tdb)
	otherDirect, otherVia := other.Open(t), other.OpenVia(t, proxy.Addr())

	// The producing service on a direct pool, with a checker that decides
	// by looking for the business row, as a real one would.
	producer := newBus(t, db, "orders", eventbus.WithTXCheckTimeout(time.Minute))
	probe := newProbe(orderExists(db, otherDirect))
	must(t, producer.RegisterEventTXChecker(probe.check))
	// One engine writes business rows and half messages in one transaction
	// through the proxy (never started: its own commits would meet the
	// proxy's fault); the other writes business rows in another database
	// through the proxy while the producer keeps half messages on its own
	// pool.
	sameTx := newEngine(t, via, newBus(t, via, "orders"))
	ownTx := newEngine(t, otherVia, producer)

	consumer := newBus(t, tdb.Open(t), "billing")
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(rec.handle))
	start(t, consumer)

	type outcome struct {
		evt *ddd.DomainEvent
		err error
	}
	place := func(eng *ddd.Engine, id string, fault func(marker string) <-chan struct{}) outcome {
		evt := mustEvent(t, id, 0, ddd.WithSendType(ddd.SendTransaction))
		fired := fault("commit")
		err := eng.Run(ctx, func(ctx context.Context, uow *ddd.UnitOfWork) error {
			uow.Raise(evt)
			return uow.Tx().Create(&order{ID: id, Amount: 1}).Error
		})
		select {
		case <-fired:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the proxy never saw the COMMIT (Run returned %v)", id, err)
		}
		return outcome{evt, err}
	}
	orderStored := func(id string) bool {
		return count(t, db, "SELECT COUNT(*) FROM orders WHERE id = ?", id)+count(t, otherDirect, "SELECT COUNT(*) FROM orders WHERE id = ?", id) == 1
	}

	// Committed, reply lost, half message in the business transaction: the
	// engine learns the truth from Commit, and the unit of work succeeded.
	sameLost := place(sameTx, "same-reply-lost", proxy.LoseReplyTo)
	if !orderStored("same-reply-lost") {
		t.Fatal("same-reply-lost: the order is not stored: the proxy did not let the COMMIT through")
	}
	if sameLost.err != nil {
		t.Errorf("same-reply-lost: Run = %v, want nil: the business transaction committed and its events were published", sameLost.err)
	}
	if n := logCount(t, db, []string{sameLost.evt.ID}); n != 1 {
		t.Fatalf("same-reply-lost: the committed order's event is in the log %d times, want 1 (the half message was rolled back on a guess?)", n)
	}

	// Rolled back (the COMMIT never arrived): nothing exists, not even a
	// half message.
	sameDropped := place(sameTx, "same-dropped", proxy.DropPacket)
	if sameDropped.err == nil || orderStored("same-dropped") {
		t.Fatalf("same-dropped: Run = %v, order stored %t; want an error and no order", sameDropped.err, orderStored("same-dropped"))
	}

	// Half messages on the bus's own pool: committed with the reply lost,
	// and rolled back. Neither is rolled back on a guess: both stay
	// pending for the checker.
	ownLost := place(ownTx, "own-reply-lost", proxy.LoseReplyTo)
	ownDropped := place(ownTx, "own-dropped", proxy.DropPacket)
	if ownLost.err == nil || ownDropped.err == nil {
		t.Fatalf("own pool: Run = %v and %v, want both to report the failed COMMIT", ownLost.err, ownDropped.err)
	}
	if !orderStored("own-reply-lost") || orderStored("own-dropped") {
		t.Fatalf("own pool: orders stored %t and %t, want true and false", orderStored("own-reply-lost"), orderStored("own-dropped"))
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transactions WHERE state = ?", txPending); n != 2 {
		t.Fatalf("%d pending transactions after the unknown COMMITs on the business pool, want 2 left for the checker", n)
	}

	makeDue(t, db)
	n, err := producer.CheckTransactions(ctx)
	must(t, err)
	if n != 2 {
		t.Fatalf("the checker resolved %d transactions, want 2", n)
	}
	for key, want := range map[string]int{"same-reply-lost": 0, "same-dropped": 0, "own-reply-lost": 1, "own-dropped": 1} {
		if got := probe.callsOf(key); got != want {
			t.Errorf("checker asked %d times about %s, want %d", got, key, want)
		}
	}
	marker := dispatchN(t, producer, "marker", 0, 1)
	waitFor(t, 15*time.Second, "the committed orders' events and the marker", func() bool { return rec.distinct() >= 3 })
	waitCaughtUp(t, db, "billing")
	rec.checkExactlyOnce(t, append([]string{sameLost.evt.ID, ownLost.evt.ID}, marker...))
	if n := logCount(t, db, []string{sameDropped.evt.ID, ownDropped.evt.ID}); n != 0 {
		t.Fatalf("%d events of rolled-back orders in the log", n)
	}
	var states []int
	must(t, db.Raw("SELECT state FROM ddd_transactions ORDER BY id").Scan(&states).Error)
	if len(states) != 3 || states[0] != txCommitted || states[1] != txCommitted || states[2] != txRolledBack {
		t.Fatalf("transaction states %v, want [committed committed rolled-back]: the dropped COMMIT left no half message", states)
	}
}

// orderExists is a TX checker that decides by looking for the business
// row named by the first event's sender in dbs, as a real one would.
func orderExists(dbs ...*gorm.DB) ddd.DomainEventTXChecker {
	return func(ctx context.Context, events []*ddd.DomainEvent) (ddd.TXStatus, error) {
		for _, db := range dbs {
			var n int64
			if err := db.WithContext(ctx).Model(&order{}).Where("id = ?", events[0].Sender).Count(&n).Error; err != nil {
				return ddd.TXUnknown, err
			}
			if n == 1 {
				return ddd.TXCommit, nil
			}
		}
		return ddd.TXRollback, nil
	}
}
