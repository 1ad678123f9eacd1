package ddd

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"
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
// every dialect, so an event that passes Validate can always be stored,
// and is read back byte for byte as it was dispatched.
const (
	MaxIDLen     = 64
	MaxTypeLen   = 255
	MaxSenderLen = 255
)

// ErrInvalidEvent is wrapped by every error about a malformed event. It is
// the same value as eventbus.ErrInvalidEvent, so errors.Is works with either.
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
// value, so it must return a constant.
//
// An event's type name is stored with it and routes it to handlers, so it
// must stay the same for as long as events of that type are stored: renaming
// a type (or moving it to another package, when it has no EventType method)
// makes a handler registered for the new name miss the stored events unless
// it is given the old one with Router.Alias. An explicit name is the way to
// keep names stable across refactoring; the default is TypeName's.
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
// the value is nil (or a nil pointer), cannot be encoded or named, or a
// field breaks Validate's rules.
func NewDomainEvent(sender string, value any, opts ...EventOption) (*DomainEvent, error) {
	if isNil(value) {
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

// TypeNameOf returns the event type name of value's type (see TypeName).
func TypeNameOf(value any) (string, error) {
	if value == nil {
		return "", fmt.Errorf("%w: nil event value", ErrInvalidEvent)
	}
	return typeNameOfType(reflect.TypeOf(value))
}

// TypeName returns the event type name that NewDomainEvent gives values of
// type T (or *T): the name T's EventType method returns, if it has one;
// otherwise T's import path and name, e.g.
// "github.com/acme/shop/orders/events.OrderPlaced", which no other Go type
// can have. Types of package main (which has no import path), unnamed
// types and names over MaxTypeLen bytes need an EventType method.
//
// Before this rule the default was the package name and type name
// ("events.OrderPlaced"), which two packages could share; see LegacyTypeName.
func TypeName[T any]() (string, error) {
	return typeNameOfType(reflect.TypeFor[T]())
}

// LegacyTypeName returns the name that versions before import-path names
// gave T by default ("events.OrderPlaced"), and false if T names itself
// with an EventType method (its name never changed). Routers accept events
// stored under it (see NewRouter).
func LegacyTypeName[T any]() (string, bool) {
	return legacyNameOf(reflect.TypeFor[T]())
}

func legacyNameOf(rt reflect.Type) (string, bool) {
	rt = derefType(rt)
	if _, ok := reflect.New(rt).Interface().(EventTyper); ok || rt.Name() == "" {
		return "", false
	}
	return rt.String(), true
}

func derefType(rt reflect.Type) reflect.Type {
	for rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	return rt
}

func typeNameOfType(rt reflect.Type) (string, error) {
	rt = derefType(rt)
	// A new *T has the methods of both T and *T.
	if t, ok := reflect.New(rt).Interface().(EventTyper); ok {
		name := t.EventType()
		if err := checkText(rt.String()+".EventType()", name, MaxTypeLen); err != nil {
			return "", err
		}
		return name, nil
	}
	switch {
	case rt.Name() == "":
		return "", fmt.Errorf("%w: cannot name the type %s; give it a name and an EventType method", ErrInvalidEvent, rt)
	case rt.PkgPath() == "main":
		return "", fmt.Errorf("%w: %s is in package main, which has no import path to make its name unique; give it an EventType method", ErrInvalidEvent, rt)
	}
	name := rt.PkgPath() + "." + rt.Name()
	if err := checkText("type name of "+rt.String(), name, MaxTypeLen); err != nil {
		return "", fmt.Errorf("%w; give it an EventType method", err)
	}
	return name, nil
}

// Validate checks the fields the bus relies on. Errors wrap ErrInvalidEvent.
//
// The rules are the same on every database, and what passes them is
// stored and read back byte for byte: ID, Type and Sender are 1..MaxIDLen,
// MaxTypeLen and MaxSenderLen bytes of valid UTF-8 without NUL bytes
// (PostgreSQL text cannot hold a NUL, and MySQL's utf8mb4 refuses invalid
// UTF-8); metadata keys and values are valid UTF-8 (they are stored as
// JSON, whose encoder would replace invalid bytes); the payload is valid
// JSON (RFC 8259, hence UTF-8); CreatedAt is set.
func (e *DomainEvent) Validate() error { return e.validate(true) }

func (e *DomainEvent) validate(payloadJSON bool) error {
	if e == nil {
		return fmt.Errorf("%w: nil event", ErrInvalidEvent)
	}
	for _, f := range [...]struct {
		name, value string
		max         int
	}{{"id", e.ID, MaxIDLen}, {"type", e.Type, MaxTypeLen}, {"sender", e.Sender, MaxSenderLen}} {
		if err := checkText(f.name, f.value, f.max); err != nil {
			return err
		}
	}
	switch {
	case !e.SendType.Valid():
		return fmt.Errorf("%w: unknown send type %d", ErrInvalidEvent, e.SendType)
	case len(e.Payload) == 0 || !utf8.Valid(e.Payload) || payloadJSON && !json.Valid(e.Payload):
		return fmt.Errorf("%w: payload of %s %s is not valid JSON", ErrInvalidEvent, e.Type, e.ID)
	case e.CreatedAt.IsZero():
		return fmt.Errorf("%w: created_at is zero", ErrInvalidEvent)
	}
	for k, v := range e.Metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: metadata entry %q of %s is not valid UTF-8", ErrInvalidEvent, k, e.ID)
		}
	}
	return nil
}

// checkText applies the rules of ID, Type and Sender to s.
func checkText(field, s string, max int) error {
	switch {
	case s == "" || len(s) > max:
		return fmt.Errorf("%w: %s must be 1..%d bytes, got %d", ErrInvalidEvent, field, max, len(s))
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalidEvent, field, s)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s %q contains a NUL byte", ErrInvalidEvent, field, s)
	}
	return nil
}

// isNil reports whether v is nil or a nil pointer, map, slice or interface.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}
