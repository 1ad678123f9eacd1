package ddd_test

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/dddbus/eventbus/ddd"
	customers "github.com/dddbus/eventbus/ddd/internal/collide/customers/events"
	invoices "github.com/dddbus/eventbus/ddd/internal/collide/invoices/events"
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
	if evt.Type != "github.com/dddbus/eventbus/ddd_test.Shipped" || evt.Sender != "order-1" || evt.SendType != ddd.SendFIFO ||
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
		if got, err := tn(); err != nil || got != "github.com/dddbus/eventbus/ddd_test.Shipped" {
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
		"nil pointer":   func() (*ddd.DomainEvent, error) { return ddd.NewDomainEvent("s", (*Shipped)(nil)) },
		"NUL in sender": func() (*ddd.DomainEvent, error) { return ddd.NewDomainEvent("a\x00b", Shipped{}) },
		"bad UTF-8 id": func() (*ddd.DomainEvent, error) {
			return ddd.NewDomainEvent("s", Shipped{}, ddd.WithEventID("id-\xff"))
		},
		"bad UTF-8 metadata": func() (*ddd.DomainEvent, error) {
			return ddd.NewDomainEvent("s", Shipped{}, ddd.WithMetadata("k", "v\xc3"))
		},
		"bad EventType": func() (*ddd.DomainEvent, error) { return ddd.NewDomainEvent("s", badName{}) },
	}
	for name, f := range cases {
		evt, err := f()
		if !errors.Is(err, ddd.ErrInvalidEvent) || evt != nil {
			t.Errorf("%s: got (%v, %v), want ErrInvalidEvent", name, evt, err)
		}
	}
}

type Wrapper struct{ F func() }

type badName struct{}

func (badName) EventType() string { return "bad\x00name" }

// Names: the import path by default, so types with the same package and
// type names stay apart; an EventType method wins.
func TestTypeNames(t *testing.T) {
	cust, err := ddd.TypeName[customers.Created]()
	if err != nil || cust != "github.com/dddbus/eventbus/ddd/internal/collide/customers/events.Created" {
		t.Fatalf("TypeName[customers.Created] = %q, %v", cust, err)
	}
	inv, err := ddd.TypeName[*invoices.Created]()
	if err != nil || inv != "github.com/dddbus/eventbus/ddd/internal/collide/invoices/events.Created" {
		t.Fatalf("TypeName[*invoices.Created] = %q, %v", inv, err)
	}
	for name, legacy := range map[string]func() (string, bool){
		"customers": ddd.LegacyTypeName[customers.Created],
		"invoices":  ddd.LegacyTypeName[*invoices.Created],
	} {
		if got, ok := legacy(); !ok || got != "events.Created" {
			t.Errorf("LegacyTypeName %s = %q, %t", name, got, ok)
		}
	}
	if got, ok := ddd.LegacyTypeName[Named](); ok {
		t.Errorf("LegacyTypeName of a type with EventType = %q, want none", got)
	}
	if _, err := ddd.TypeName[struct{ A int }](); !errors.Is(err, ddd.ErrInvalidEvent) {
		t.Errorf("unnamed type: err %v", err)
	}
	if _, err := ddd.TypeName[badName](); !errors.Is(err, ddd.ErrInvalidEvent) {
		t.Errorf("EventType with a NUL byte: err %v", err)
	}
}

// Validate's rules: what passes is stored byte for byte on every database.
func TestValidateText(t *testing.T) {
	base := func() *ddd.DomainEvent {
		e, err := ddd.NewDomainEvent("s", Shipped{ID: "x"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	bad := map[string]func(*ddd.DomainEvent){
		"NUL in id":            func(e *ddd.DomainEvent) { e.ID = "a\x00" },
		"NUL in type":          func(e *ddd.DomainEvent) { e.Type = "t\x00" },
		"NUL in sender":        func(e *ddd.DomainEvent) { e.Sender = "\x00" },
		"bad UTF-8 in id":      func(e *ddd.DomainEvent) { e.ID = "\xff" },
		"bad UTF-8 in type":    func(e *ddd.DomainEvent) { e.Type = "t\xe2\x82" },
		"bad UTF-8 in sender":  func(e *ddd.DomainEvent) { e.Sender = "s\xc0\xaf" }, // overlong '/'
		"surrogate in sender":  func(e *ddd.DomainEvent) { e.Sender = "\xed\xa0\x80" },
		"bad UTF-8 meta key":   func(e *ddd.DomainEvent) { e.Metadata = map[string]string{"k\xff": "v"} },
		"bad UTF-8 meta value": func(e *ddd.DomainEvent) { e.Metadata = map[string]string{"k": "\xff"} },
		"bad UTF-8 in payload": func(e *ddd.DomainEvent) { e.Payload = []byte("\"\xff\"") },
		"long type":            func(e *ddd.DomainEvent) { e.Type = strings.Repeat("é", 128) }, // 256 bytes
	}
	for name, f := range bad {
		e := base()
		f(e)
		if err := e.Validate(); !errors.Is(err, ddd.ErrInvalidEvent) {
			t.Errorf("%s: Validate = %v, want ErrInvalidEvent", name, err)
		}
	}
	good := base()
	good.ID = "id \t\x01\u2028😀"
	good.Type = "type/\uFFFE\U0010FFFF"
	good.Sender = "sender with trailing space "
	good.Metadata = map[string]string{"": "", "nul": "a\x00b", "html": "<&>", "😀": "\u2028"}
	good.Payload = []byte(`{"s":"\u0000 é"}`)
	if err := good.Validate(); err != nil {
		t.Errorf("valid unusual text: %v", err)
	}
	var zero ddd.DomainEvent
	if err := zero.Validate(); !errors.Is(err, ddd.ErrInvalidEvent) {
		t.Errorf("zero event: %v", err)
	}
	var nilEvt *ddd.DomainEvent
	if err := nilEvt.Validate(); !errors.Is(err, ddd.ErrInvalidEvent) {
		t.Errorf("nil event: %v", err)
	}
	if err := nilEvt.Decode(&Shipped{}); !errors.Is(err, ddd.ErrInvalidEvent) {
		t.Errorf("Decode of a nil event: %v", err)
	}
}
