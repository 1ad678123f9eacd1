package ddd_test

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/dddbus/eventbus/ddd"
)

type Shipped struct{ ID string }

type Named struct{}

func (Named) EventType() string { return "custom.named" }

func TestNewEventID(t *testing.T) {
	const n = 10000
	ids := make([]string, n)
	seen := map[string]bool{}
	for i := range ids {
		ids[i] = ddd.NewEventID()
		if len(ids[i]) != 26 {
			t.Fatalf("id %q has length %d, want 26", ids[i], len(ids[i]))
		}
		if seen[ids[i]] {
			t.Fatalf("duplicate id %s", ids[i])
		}
		seen[ids[i]] = true
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids generated in sequence do not sort in generation order")
	}
}

func TestNewDomainEvent(t *testing.T) {
	evt, err := ddd.NewDomainEvent("order-1", Shipped{ID: "x"}, ddd.WithSendType(ddd.SendFIFO), ddd.WithMetadata("trace", "t1"))
	if err != nil {
		t.Fatal(err)
	}
	if evt.Type != "ddd_test.Shipped" || evt.Sender != "order-1" || evt.SendType != ddd.SendFIFO ||
		evt.Metadata["trace"] != "t1" || string(evt.Payload) != `{"ID":"x"}` || evt.CreatedAt.IsZero() {
		t.Fatalf("unexpected event %+v", evt)
	}
	if named, err := ddd.NewDomainEvent("s", &Named{}); err != nil || named.Type != "custom.named" {
		t.Fatalf("EventType not used: %+v, %v", named, err)
	}
	for name, tn := range map[string]func() (string, error){
		"value":   ddd.TypeName[Shipped],
		"pointer": ddd.TypeName[*Shipped],
	} {
		if got, err := tn(); err != nil || got != "ddd_test.Shipped" {
			t.Errorf("TypeName %s = %q, %v", name, got, err)
		}
	}
	if got, _ := ddd.TypeName[*Named](); got != "custom.named" {
		t.Errorf("TypeName[*Named] = %q", got)
	}
}

func TestNewDomainEventErrors(t *testing.T) {
	cases := map[string]func() (*ddd.DomainEvent, error){
		"nil value":     func() (*ddd.DomainEvent, error) { return ddd.NewDomainEvent("s", nil) },
		"unencodable":   func() (*ddd.DomainEvent, error) { return ddd.NewDomainEvent("s", Wrapper{F: func() {}}) },
		"empty sender":  func() (*ddd.DomainEvent, error) { return ddd.NewDomainEvent("", Shipped{}) },
		"long sender":   func() (*ddd.DomainEvent, error) { return ddd.NewDomainEvent(strings.Repeat("s", 256), Shipped{}) },
		"unnamed type":  func() (*ddd.DomainEvent, error) { return ddd.NewDomainEvent("s", struct{ A int }{1}) },
		"bad send type": func() (*ddd.DomainEvent, error) { return ddd.NewDomainEvent("s", Shipped{}, ddd.WithSendType(7)) },
		"empty id":      func() (*ddd.DomainEvent, error) { return ddd.NewDomainEvent("s", Shipped{}, ddd.WithEventID("")) },
	}
	for name, f := range cases {
		evt, err := f()
		if !errors.Is(err, ddd.ErrInvalidEvent) || evt != nil {
			t.Errorf("%s: got (%v, %v), want ErrInvalidEvent", name, evt, err)
		}
	}
}

type Wrapper struct{ F func() }
