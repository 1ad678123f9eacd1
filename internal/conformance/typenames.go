package conformance

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/conformance/names/customers"
	"github.com/dddbus/eventbus/internal/conformance/names/invoices"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("SameNamedTypesStayApartInTheLog", testSameNamedTypes)
	register("RenamedTypeReceivesStoredEvents", testRenamedType)
}

// testSameNamedTypes: customers.Created and invoices.Created (same Go
// name, two packages) are stored under different names, and a service
// that handles invoices never receives the customer event, decoded into an
// invoice or otherwise: it is skipped (no handler), not handled.
func testSameNamedTypes(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	cust, err := ddd.NewDomainEvent("c-1", customers.Created{CustomerID: "c-1", Name: "Ann"})
	must(t, err)
	inv, err := ddd.NewDomainEvent("i-1", invoices.Created{InvoiceID: "i-1", Amount: 7})
	must(t, err)
	must(t, producer.Dispatch(context.Background(), cust, inv))
	if cust.Type == inv.Type {
		t.Fatalf("both types are named %q", cust.Type)
	}
	if n := count(t, db, "SELECT COUNT(DISTINCT event_type) FROM ddd_events"); n != 2 {
		t.Fatalf("%d distinct stored type names, want 2", n)
	}

	billing := newBus(t, db, "billing")
	router := ddd.NewRouter()
	var mu sync.Mutex
	var got []invoices.Created
	must(t, ddd.On(router, func(_ context.Context, _ *ddd.DomainEvent, e invoices.Created) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e)
		return nil
	}))
	must(t, billing.RegisterEventHandler(router.HandleEvent))
	start(t, billing)
	waitFor(t, 10*time.Second, "billing at the head of the log", func() bool { return atHead(t, db, "billing") })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != (invoices.Created{InvoiceID: "i-1", Amount: 7}) {
		t.Fatalf("invoices handled %+v, want only i-1", got)
	}
	if st := billing.Stats(); st.Skipped != 1 || st.Failed != 0 {
		t.Fatalf("stats %+v, want the customer event skipped (no handler), nothing failed", st)
	}
}

// Two versions of one event: placedV1 was stored under its name, then
// renamed (placedV2, a new name) with an alias from the old one.
type placedV1 struct{ OrderID string }

func (placedV1) EventType() string { return "shop.OrderPlaced" }

type placedV2 struct{ OrderID string }

func (placedV2) EventType() string { return "shop.OrderPlacedV2" }

// testRenamedType: events stored under a type's old name reach the handler
// of its new name through Router.Alias, in order with those stored under
// the new name; a service without the alias skips them (which is what
// the alias is for).
func testRenamedType(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	var want []string
	for _, id := range []string{"o-1", "o-2", "o-3"} {
		evt, err := ddd.NewDomainEvent("shop", placedV1{OrderID: id})
		must(t, err)
		must(t, producer.Dispatch(context.Background(), evt))
		want = append(want, id)
	}
	evt, err := ddd.NewDomainEvent("shop", placedV2{OrderID: "o-4"})
	must(t, err)
	must(t, producer.Dispatch(context.Background(), evt))
	want = append(want, "o-4")

	type seen struct {
		mu  sync.Mutex
		ids []string
	}
	consumer := func(service string, alias bool) (*seen, func() int64) {
		s := &seen{}
		router := ddd.NewRouter()
		must(t, ddd.On(router, func(_ context.Context, _ *ddd.DomainEvent, e placedV2) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.ids = append(s.ids, e.OrderID)
			return nil
		}))
		if alias {
			must(t, router.Alias("shop.OrderPlaced", "shop.OrderPlacedV2"))
		}
		bus := newBus(t, db, service)
		must(t, bus.RegisterEventHandler(router.HandleEvent))
		start(t, bus)
		waitFor(t, 10*time.Second, service+" at the head of the log", func() bool { return atHead(t, db, service) })
		return s, func() int64 { return bus.Stats().Skipped }
	}
	renamed, _ := consumer("renamed", true)
	renamed.mu.Lock()
	if len(renamed.ids) != len(want) {
		t.Errorf("with the alias: handled %v, want %v", renamed.ids, want)
	}
	for i := range min(len(renamed.ids), len(want)) {
		if renamed.ids[i] != want[i] {
			t.Errorf("with the alias: handled %v, want %v in that order", renamed.ids, want)
			break
		}
	}
	renamed.mu.Unlock()
	plain, skipped := consumer("no-alias", false)
	plain.mu.Lock()
	defer plain.mu.Unlock()
	if len(plain.ids) != 1 || skipped() != 3 {
		t.Errorf("without the alias: handled %v and skipped %d, want only o-4 handled and 3 skipped", plain.ids, skipped())
	}
}
