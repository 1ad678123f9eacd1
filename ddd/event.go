package ddd

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// SendType says how the bus delivers an event.
type SendType int8

const (
	// SendNormal events of one sender are handled in log order, but a failed
	// event is retried on its own and does not hold back later events.
	SendNormal SendType = 1
	// SendFIFO events of one sender are strictly ordered: while one of them
	// waits for a retry, the later FIFO events of that sender are parked
	// behind it until it succeeds or becomes a dead letter.
	SendFIFO SendType = 2
	// SendTransaction events go through the two-phase flow (DispatchBegin,
	// then Commit or Rollback) when the Engine dispatches them.
	SendTransaction SendType = 3
)

// Valid reports whether t is one of the defined send types.
func (t SendType) Valid() bool { return t >= SendNormal && t <= SendTransaction }

func (t SendType) String() string {
	switch t {
	case SendNormal:
		return "normal"
	case SendFIFO:
		return "fifo"
	case SendTransaction:
		return "transaction"
	}
	return fmt.Sprintf("SendType(%d)", int8(t))
}

// Limits on event fields. They match the column sizes of the event store on
// every dialect, so an event that passes Validate can always be stored.
const (
	MaxIDLen     = 64
	MaxTypeLen   = 255
	MaxSenderLen = 255
)

// ErrInvalidEvent is wrapped by every error about a malformed event.
var ErrInvalidEvent = errors.New("invalid domain event")

// DomainEvent is a fact raised by an aggregate. Its ID is unique and sorts by
// creation time; handlers should use it as their idempotency key, because
// delivery is at-least-once.
type DomainEvent struct {
	ID        string            `json:"id"`
	Type      string            `json:"type"`
	Sender    string            `json:"sender"` // the aggregate ID; ordering is per sender
	SendType  SendType          `json:"send_type"`
	Payload   json.RawMessage   `json:"payload"`
	Metadata  map[string]string `json:"metadata,omitempty"` // trace context, correlation IDs...
	CreatedAt time.Time         `json:"created_at"`
}

// EventTyper lets an event type name itself. EventType is called on a zero
// value, so it must return a constant. Without it the type name is the Go
// type's name qualified by its package name, e.g. "orders.OrderPlaced".
type EventTyper interface {
	EventType() string
}

// EventOption adjusts an event built by NewDomainEvent.
type EventOption func(*DomainEvent)

// WithSendType sets the send type (default SendNormal).
func WithSendType(t SendType) EventOption { return func(e *DomainEvent) { e.SendType = t } }

// WithMetadata adds a metadata entry.
func WithMetadata(key, value string) EventOption {
	return func(e *DomainEvent) {
		if e.Metadata == nil {
			e.Metadata = map[string]string{}
		}
		e.Metadata[key] = value
	}
}

// WithEventID overrides the generated ID, e.g. to make a retried command
// produce the same event ID.
func WithEventID(id string) EventOption { return func(e *DomainEvent) { e.ID = id } }

// NewDomainEvent builds an event raised by sender from a user's event value,
// which is encoded as JSON. It returns an error wrapping ErrInvalidEvent when
// the value is nil, cannot be encoded, or the sender or type is empty or too long.
func NewDomainEvent(sender string, value any, opts ...EventOption) (*DomainEvent, error) {
	if value == nil {
		return nil, fmt.Errorf("%w: nil event value", ErrInvalidEvent)
	}
	typ, err := TypeNameOf(value)
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("%w: encode %s: %v", ErrInvalidEvent, typ, err)
	}
	e := &DomainEvent{
		ID:        NewEventID(),
		Type:      typ,
		Sender:    sender,
		SendType:  SendNormal,
		Payload:   payload,
		CreatedAt: time.Now().UTC(),
	}
	for _, o := range opts {
		o(e)
	}
	// json.Marshal only returns valid JSON: the payload is scanned again
	// only if an option replaced it.
	replaced := len(e.Payload) != len(payload) || len(payload) > 0 && &e.Payload[0] != &payload[0]
	if err := e.validate(replaced); err != nil {
		return nil, err
	}
	return e, nil
}

// TypeNameOf returns the event type name of value's type (see EventTyper).
func TypeNameOf(value any) (string, error) {
	if value == nil {
		return "", fmt.Errorf("%w: nil event value", ErrInvalidEvent)
	}
	return typeNameOfType(reflect.TypeOf(value))
}

// TypeName returns the event type name that NewDomainEvent gives values of type T.
func TypeName[T any]() (string, error) {
	return typeNameOfType(reflect.TypeFor[T]())
}

func typeNameOfType(rt reflect.Type) (string, error) {
	for rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	// A new *T has the methods of both T and *T.
	if t, ok := reflect.New(rt).Interface().(EventTyper); ok {
		name := t.EventType()
		if name == "" || len(name) > MaxTypeLen {
			return "", fmt.Errorf("%w: %s.EventType() must return 1..%d bytes", ErrInvalidEvent, rt, MaxTypeLen)
		}
		return name, nil
	}
	if rt.Name() == "" {
		return "", fmt.Errorf("%w: cannot name the type %s; give it a name or an EventType method", ErrInvalidEvent, rt)
	}
	return rt.String(), nil
}

// Validate checks the fields the bus relies on. Errors wrap ErrInvalidEvent.
func (e *DomainEvent) Validate() error { return e.validate(true) }

func (e *DomainEvent) validate(payloadJSON bool) error {
	switch {
	case e == nil:
		return fmt.Errorf("%w: nil event", ErrInvalidEvent)
	case e.ID == "" || len(e.ID) > MaxIDLen:
		return fmt.Errorf("%w: id must be 1..%d bytes, got %d", ErrInvalidEvent, MaxIDLen, len(e.ID))
	case e.Type == "" || len(e.Type) > MaxTypeLen:
		return fmt.Errorf("%w: type must be 1..%d bytes, got %d", ErrInvalidEvent, MaxTypeLen, len(e.Type))
	case e.Sender == "" || len(e.Sender) > MaxSenderLen:
		return fmt.Errorf("%w: sender must be 1..%d bytes, got %d", ErrInvalidEvent, MaxSenderLen, len(e.Sender))
	case !e.SendType.Valid():
		return fmt.Errorf("%w: unknown send type %d", ErrInvalidEvent, e.SendType)
	case len(e.Payload) == 0 || payloadJSON && !json.Valid(e.Payload):
		return fmt.Errorf("%w: payload of %s %s is not valid JSON", ErrInvalidEvent, e.Type, e.ID)
	case e.CreatedAt.IsZero():
		return fmt.Errorf("%w: created_at is zero", ErrInvalidEvent)
	}
	return nil
}

// Decode unmarshals the payload into v.
func (e *DomainEvent) Decode(v any) error {
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("decode %s %s: %w", e.Type, e.ID, err)
	}
	return nil
}
