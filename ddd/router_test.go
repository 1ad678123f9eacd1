package ddd_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dddbus/eventbus/ddd"
	customers "github.com/dddbus/eventbus/ddd/internal/collide/customers/events"
	invoices "github.com/dddbus/eventbus/ddd/internal/collide/invoices/events"
)

func TestRouter(t *testing.T) {
	r := ddd.NewRouter()
	var got []string
	if err := ddd.On(r, func(ctx context.Context, evt *ddd.DomainEvent, s Shipped) error {
		got = append(got, "billing:"+s.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := ddd.On(r, func(ctx context.Context, evt *ddd.DomainEvent, s Shipped) error {
		got = append(got, "shipping:"+s.ID)
		return boom
	}); err != nil {
		t.Fatal(err)
	}
	evt, _ := ddd.NewDomainEvent("o1", Shipped{ID: "o1"})
	if err := r.HandleEvent(context.Background(), evt); !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	if len(got) != 2 || got[0] != "billing:o1" || got[1] != "shipping:o1" {
		t.Fatalf("handlers ran %v", got)
	}
	other, _ := ddd.NewDomainEvent("o1", Named{})
	if err := r.HandleEvent(context.Background(), other); !errors.Is(err, ddd.ErrNoHandler) {
		t.Fatalf("unrouted event: err %v, want ErrNoHandler", err)
	}
	// A payload that does not fit is a failure that is retried (then a dead
	// letter), not a permanent one, and the handlers never see it.
	got = nil
	bad := *evt
	bad.Payload = []byte(`{"ID": 5}`)
	if err := r.HandleEvent(context.Background(), &bad); !errors.Is(err, ddd.ErrPayloadMismatch) || ddd.IsPermanent(err) {
		t.Fatalf("undecodable payload: err %v, want a retryable ErrPayloadMismatch", err)
	}
	bad.Payload = []byte(`{"Name": "another event"}`)
	if err := r.HandleEvent(context.Background(), &bad); !errors.Is(err, ddd.ErrPayloadMismatch) || len(got) != 0 {
		t.Fatalf("payload of another type: err %v, handlers ran %v", err, got)
	}
	if err := ddd.On[Shipped](r, nil); !errors.Is(err, ddd.ErrInvalidHandler) {
		t.Fatalf("nil handler: err %v", err)
	}
	if err := r.Handle("", func(context.Context, *ddd.DomainEvent) error { return nil }); !errors.Is(err, ddd.ErrInvalidHandler) {
		t.Fatalf("empty type: err %v", err)
	}
}

// Misuse returns errors, never panics.
func TestRouterMisuse(t *testing.T) {
	ctx := context.Background()
	evt, _ := ddd.NewDomainEvent("o1", Shipped{ID: "o1"})
	var nilRouter *ddd.Router
	if err := nilRouter.HandleEvent(ctx, evt); !errors.Is(err, ddd.ErrInvalidHandler) {
		t.Errorf("nil router HandleEvent: %v", err)
	}
	if err := nilRouter.Handle("t", func(context.Context, *ddd.DomainEvent) error { return nil }); !errors.Is(err, ddd.ErrInvalidHandler) {
		t.Errorf("nil router Handle: %v", err)
	}
	if err := nilRouter.Alias("a", "b"); !errors.Is(err, ddd.ErrInvalidHandler) {
		t.Errorf("nil router Alias: %v", err)
	}
	if err := ddd.On(nilRouter, func(context.Context, *ddd.DomainEvent, Shipped) error { return nil }); !errors.Is(err, ddd.ErrInvalidHandler) {
		t.Errorf("nil router On: %v", err)
	}
	var zero ddd.Router // usable without NewRouter
	if err := zero.HandleEvent(ctx, nil); !errors.Is(err, ddd.ErrInvalidEvent) {
		t.Errorf("HandleEvent(nil): %v", err)
	}
	if err := zero.HandleEvent(ctx, &ddd.DomainEvent{}); !errors.Is(err, ddd.ErrNoHandler) {
		t.Errorf("zero event on an empty router: %v", err)
	}
	if err := ddd.On(&zero, func(context.Context, *ddd.DomainEvent, Shipped) error { return nil }); err != nil {
		t.Fatalf("On on a zero Router: %v", err)
	}
	if err := zero.HandleEvent(ctx, evt); err != nil {
		t.Errorf("zero Router: %v", err)
	}
}

// The case that motivated import-path names: two packages named events,
// each with a Created type.
func TestRouterKeepsSameNamedTypesApart(t *testing.T) {
	ctx := context.Background()
	r := ddd.NewRouter()
	var invoiced []invoices.Created
	if err := ddd.On(r, func(_ context.Context, _ *ddd.DomainEvent, e invoices.Created) error {
		invoiced = append(invoiced, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cust, _ := ddd.NewDomainEvent("c1", customers.Created{CustomerID: "c1", Name: "Ann"})
	if err := r.HandleEvent(ctx, cust); !errors.Is(err, ddd.ErrNoHandler) || len(invoiced) != 0 {
		t.Fatalf("customer event on the invoices router: err %v, handled %v", err, invoiced)
	}
	// A customer event stored under the legacy name reaches the invoices
	// handler through the legacy alias, and fails to decode: an error
	// (retried, then a dead letter), not a zero invoice.
	legacy := *cust
	legacy.Type = "events.Created"
	if err := r.HandleEvent(ctx, &legacy); !errors.Is(err, ddd.ErrPayloadMismatch) || len(invoiced) != 0 {
		t.Fatalf("legacy customer event: err %v, handled %v", err, invoiced)
	}
	inv, _ := ddd.NewDomainEvent("i1", invoices.Created{InvoiceID: "i1", Amount: 3})
	oldInv := *inv
	oldInv.Type = "events.Created"
	for _, e := range []*ddd.DomainEvent{inv, &oldInv} {
		if err := r.HandleEvent(ctx, e); err != nil {
			t.Fatalf("invoice event %s: %v", e.Type, err)
		}
	}
	if len(invoiced) != 2 || invoiced[1].InvoiceID != "i1" {
		t.Fatalf("invoices handled: %v", invoiced)
	}
	// Both types on one router: their names differ, but the legacy name is
	// now ambiguous, so an event under it fails until an alias decides.
	var customersSeen int
	if err := ddd.On(r, func(context.Context, *ddd.DomainEvent, customers.Created) error { customersSeen++; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := r.HandleEvent(ctx, &oldInv); !errors.Is(err, ddd.ErrTypeNameConflict) {
		t.Fatalf("ambiguous legacy name: err %v, want ErrTypeNameConflict", err)
	}
	invName, _ := ddd.TypeName[invoices.Created]()
	if err := r.Alias("events.Created", invName); err != nil {
		t.Fatal(err)
	}
	if err := r.HandleEvent(ctx, &oldInv); err != nil || len(invoiced) != 3 {
		t.Fatalf("after Alias: err %v, handled %d", err, len(invoiced))
	}
	if err := r.HandleEvent(ctx, cust); err != nil || customersSeen != 1 {
		t.Fatalf("customer event: err %v, seen %d", err, customersSeen)
	}
	// WithoutLegacyNames: only current names route.
	strict := ddd.NewRouter(ddd.WithoutLegacyNames())
	if err := ddd.On(strict, func(context.Context, *ddd.DomainEvent, invoices.Created) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := strict.HandleEvent(ctx, &oldInv); !errors.Is(err, ddd.ErrNoHandler) {
		t.Fatalf("legacy name without legacy names: err %v", err)
	}
}

type twinA struct{ A string }

func (twinA) EventType() string { return "shop.Twin" }

type twinB struct{ B string }

func (twinB) EventType() string { return "shop.Twin" }

// Two Go types cannot share a name on one router; aliases rename.
func TestRouterNamesAndAliases(t *testing.T) {
	ctx := context.Background()
	r := ddd.NewRouter()
	noop := func(context.Context, *ddd.DomainEvent, twinA) error { return nil }
	if err := ddd.On(r, noop); err != nil {
		t.Fatal(err)
	}
	if err := ddd.On(r, noop); err != nil {
		t.Fatalf("the same type twice: %v", err)
	}
	if err := ddd.On(r, func(context.Context, *ddd.DomainEvent, twinB) error { return nil }); !errors.Is(err, ddd.ErrTypeNameConflict) {
		t.Fatalf("second type under one name: err %v, want ErrTypeNameConflict", err)
	}
	if err := ddd.On(r, func(context.Context, *ddd.DomainEvent, *twinA) error { return nil }); err != nil {
		t.Fatalf("*T is T: %v", err)
	}
	// A raw handler binds no type and may share the name.
	raw := 0
	if err := r.Handle("shop.Twin", func(context.Context, *ddd.DomainEvent) error { raw++; return nil }); err != nil {
		t.Fatal(err)
	}
	// Rename: events stored as "shop.TwinV0" reach shop.Twin's handlers.
	if err := r.Alias("shop.TwinV0", "shop.Twin"); err != nil {
		t.Fatal(err)
	}
	old, _ := ddd.NewDomainEvent("s", twinA{A: "x"})
	old.Type = "shop.TwinV0"
	if err := r.HandleEvent(ctx, old); err != nil || raw != 1 {
		t.Fatalf("aliased event: err %v, raw handler ran %d times", err, raw)
	}
	conflicts := map[string]func() error{
		"alias of a routed name":     func() error { return r.Alias("shop.Twin", "x") },
		"alias to an alias":          func() error { return r.Alias("y", "shop.TwinV0") },
		"alias of an alias's target": func() error { return r.Alias("shop.Twin", "z") },
		"re-alias elsewhere":         func() error { return r.Alias("shop.TwinV0", "other") },
		"handler on an alias": func() error {
			return r.Handle("shop.TwinV0", func(context.Context, *ddd.DomainEvent) error { return nil })
		},
		"typed handler on an alias": func() error {
			return ddd.On(r, func(context.Context, *ddd.DomainEvent, aliasTaken) error { return nil })
		},
	}
	if err := r.Alias("q1", "q2"); err != nil {
		t.Fatal(err)
	}
	conflicts["alias chain"] = func() error { return r.Alias("q2", "q3") }
	for name, f := range conflicts {
		if err := f(); !errors.Is(err, ddd.ErrTypeNameConflict) {
			t.Errorf("%s: err %v, want ErrTypeNameConflict", name, err)
		}
	}
	if err := r.Alias("shop.TwinV0", "shop.Twin"); err != nil {
		t.Errorf("the same alias again: %v", err)
	}
	for _, bad := range [][2]string{{"", "a"}, {"a", ""}, {"a", "a"}} {
		if err := r.Alias(bad[0], bad[1]); !errors.Is(err, ddd.ErrInvalidHandler) {
			t.Errorf("Alias(%q, %q): %v", bad[0], bad[1], err)
		}
	}
}

type aliasTaken struct{}

func (aliasTaken) EventType() string { return "shop.TwinV0" }

// StrictDecoding refuses fields the type does not have.
func TestRouterStrictDecoding(t *testing.T) {
	r := ddd.NewRouter(ddd.StrictDecoding())
	if err := ddd.On(r, func(context.Context, *ddd.DomainEvent, Shipped) error { return nil }); err != nil {
		t.Fatal(err)
	}
	evt, _ := ddd.NewDomainEvent("o1", Shipped{ID: "o1"})
	if err := r.HandleEvent(context.Background(), evt); err != nil {
		t.Fatal(err)
	}
	evt.Payload = []byte(`{"ID":"o1","Carrier":"x"}`)
	if err := r.HandleEvent(context.Background(), evt); !errors.Is(err, ddd.ErrPayloadMismatch) {
		t.Fatalf("unknown field: err %v", err)
	}
}
