package conformance

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("MismatchedPayloadIsRetriedThenDeadLettered", testMismatchedPayload)
}

// InvoiceCreated shares no field with OrderPlaced.
type InvoiceCreated struct {
	InvoiceID string `json:"invoice_id"`
	Amount    int    `json:"amount"`
}

// An event whose payload does not fit the handler's type (here another
// event's payload under its name, as two types sharing a name once
// produced) is a failure: retried, then a dead letter; the handler never
// sees a zero value.
func testMismatchedPayload(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	bus := newBus(t, db, "invoices", eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 1}))
	router := ddd.NewRouter()
	var called atomic.Int32
	must(t, ddd.On(router, func(context.Context, *ddd.DomainEvent, InvoiceCreated) error {
		called.Add(1)
		return nil
	}))
	must(t, bus.RegisterEventHandler(router.HandleEvent))
	start(t, bus)
	name, err := ddd.TypeName[InvoiceCreated]()
	must(t, err)
	evt := mustEvent(t, "customer-1", 1) // an OrderPlaced payload
	evt.Type = name
	must(t, bus.Dispatch(ctx, evt))
	waitFor(t, 20*time.Second, "the dead letter", func() bool { n, _ := bus.CountDeadLetters(ctx); return n == 1 })
	dead, err := bus.DeadLetters(ctx, 0, 10)
	must(t, err)
	if len(dead) != 1 || dead[0].Event.ID != evt.ID || dead[0].Attempts != 2 || !strings.Contains(dead[0].LastError, "does not fit") {
		t.Fatalf("dead letters %+v, want %s after 2 attempts for a payload that does not fit", dead, evt.ID)
	}
	if n := called.Load(); n != 0 {
		t.Fatalf("the handler was called %d times with a payload that does not fit", n)
	}
}
