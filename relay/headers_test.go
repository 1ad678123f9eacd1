package relay

import (
	"errors"
	"testing"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/nats-io/nats.go"
)

type Shipped struct{ ID string }

// TestEncodeDecode: an event survives the trip through headers exactly,
// metadata that cannot be a header included, and what is not an event is
// refused with ErrNotAnEvent.
func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	meta := map[string]string{
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"tracestate":  "a=1,b=2",
		"odd key":     "v",         // not a token
		"lines":       "a\nb",      // not one line
		"padded":      " x ",       // blanks NATS would trim
		"empty":       "",          // no value
		"Nats-Thing":  "reserved",  // NATS's prefix
		"eventbus-x":  "reserved",  // this package's prefix, any case
		"unicode":     "žluťoučký", // fine as a header
	}
	evt, err := ddd.NewDomainEvent("order-1", Shipped{ID: "x"}, ddd.WithSendType(ddd.SendFIFO))
	if err != nil {
		t.Fatal(err)
	}
	evt.Metadata = meta
	evt.CreatedAt = time.Date(2026, 3, 29, 1, 30, 0, 123456789, time.FixedZone("CET", 3600))
	msg, err := Encode("events.x", evt)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get(nats.MsgIdHdr) != evt.ID || msg.Header.Get("traceparent") != meta["traceparent"] ||
		msg.Header.Get(HeaderSendType) != "fifo" || msg.Header.Get("odd key") != "" {
		t.Fatalf("headers %v", msg.Header)
	}
	got, err := Decode(msg.Header, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != evt.ID || got.Type != evt.Type || got.Sender != evt.Sender || got.SendType != evt.SendType ||
		string(got.Payload) != string(evt.Payload) || !got.CreatedAt.Equal(evt.CreatedAt) || len(got.Metadata) != len(meta) {
		t.Fatalf("decoded %+v, want %+v", got, evt)
	}
	for k, v := range meta {
		if got.Metadata[k] != v {
			t.Errorf("metadata %q = %q, want %q", k, got.Metadata[k], v)
		}
	}
	for name, h := range map[string]nats.Header{
		"no headers":     nil,
		"bad send type":  {nats.MsgIdHdr: {"id"}, HeaderType: {"t"}, HeaderSender: {"s"}, HeaderSendType: {"later"}, HeaderCreatedAt: {"2026-01-01T00:00:00Z"}},
		"bad created at": {nats.MsgIdHdr: {"id"}, HeaderType: {"t"}, HeaderSender: {"s"}, HeaderSendType: {"normal"}, HeaderCreatedAt: {"yesterday"}},
		"no sender":      {nats.MsgIdHdr: {"id"}, HeaderType: {"t"}, HeaderSendType: {"normal"}, HeaderCreatedAt: {"2026-01-01T00:00:00Z"}},
		"bad metadata":   {nats.MsgIdHdr: {"id"}, HeaderType: {"t"}, HeaderSender: {"s"}, HeaderSendType: {"normal"}, HeaderCreatedAt: {"2026-01-01T00:00:00Z"}, HeaderMetadata: {"{"}},
	} {
		if _, err := Decode(h, []byte(`{}`)); !errors.Is(err, ErrNotAnEvent) {
			t.Errorf("%s: err %v, want ErrNotAnEvent", name, err)
		}
	}
	if _, err := Decode(msg.Header, []byte("not json")); !errors.Is(err, ErrNotAnEvent) || !errors.Is(err, ddd.ErrInvalidEvent) {
		t.Errorf("invalid payload: err %v", err)
	}
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	evt := &ddd.DomainEvent{Type: "orders.Order Placed>*..x"}
	got, err := SubjectFromType("events")(evt)
	if err != nil || got != "events.orders.Order_Placed__._.x" {
		t.Fatalf("SubjectFromType = %q, %v", got, err)
	}
	if err := ValidateSubject(got); err != nil {
		t.Fatal(err)
	}
	// A default type name carries an import path; the subject keeps its
	// last element.
	evt.Type = "github.com/acme/shop/orders.OrderPlaced"
	if got, err := SubjectFromType("events")(evt); err != nil || got != "events.orders.OrderPlaced" {
		t.Fatalf("SubjectFromType of an import-path name = %q, %v", got, err)
	}
	for _, bad := range []string{"", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a.\x01", "a.é"} {
		if err := ValidateSubject(bad); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("ValidateSubject(%q) = %v, want ErrInvalidSubject", bad, err)
		}
	}
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{"a.*", "a.b", true}, {"a.*", "a.b.c", false}, {"a.>", "a.b.c", true}, {"a.>", "a", false},
		{"a.b", "a.b", true}, {"a.b", "a.c", false}, {"*.b", "a.b", true}, {">", "a", true},
	} {
		if got := subjectMatches(c.pattern, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %t", c.pattern, c.subject, got)
		}
	}
}
