package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/po"
)

func init() {
	register("PersistentObjectsMatchSchema", testPersistentObjects)
}

// The po models read every table on every dialect.
func testPersistentObjects(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "po", eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 0}))
	must(t, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		return ddd.Permanent(context.Canceled)
	}))
	start(t, bus)
	evt := mustEvent(t, "po-sender", 1, ddd.WithMetadata("trace", "abc"))
	must(t, bus.Dispatch(context.Background(), evt))
	_, err := bus.DispatchBegin(context.Background(), mustEvent(t, "po-sender", 2))
	must(t, err)
	waitFor(t, 10*time.Second, "the dead letter", func() bool { n, _ := bus.CountDeadLetters(context.Background()); return n == 1 })

	var events []po.Event
	must(t, db.Table("ddd_events").Find(&events).Error)
	if len(events) != 1 || events[0].EventID != evt.ID || events[0].Seq == nil || events[0].Metadata == nil ||
		string(events[0].Payload) != string(evt.Payload) || events[0].OccurredAt != evt.CreatedAt.UnixMicro() {
		t.Fatalf("events %+v", events)
	}
	var services []po.Service
	must(t, db.Table("ddd_services").Find(&services).Error)
	if len(services) != 1 || services[0].Name != "po" || services[0].ConsumedSeq != *events[0].Seq {
		t.Fatalf("services %+v", services)
	}
	var retries []po.Retry
	must(t, db.Table("ddd_retries").Find(&retries).Error)
	if len(retries) != 1 || retries[0].State != 1 || retries[0].EventID != evt.ID || retries[0].Attempts != 1 {
		t.Fatalf("retries %+v", retries)
	}
	var txs []po.Transaction
	must(t, db.Table("ddd_transactions").Find(&txs).Error)
	var txEvents []po.TransactionEvent
	must(t, db.Table("ddd_transaction_events").Find(&txEvents).Error)
	if len(txs) != 1 || txs[0].State != 0 || len(txEvents) != 1 || txEvents[0].TxID != txs[0].ID {
		t.Fatalf("transactions %+v, events %+v", txs, txEvents)
	}
	var seqr []po.Sequencer
	must(t, db.Table("ddd_sequencer").Find(&seqr).Error)
	if len(seqr) != 1 || seqr[0].LastSeq != *events[0].Seq {
		t.Fatalf("sequencer %+v", seqr)
	}
}
