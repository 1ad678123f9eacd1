package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/nats-io/nats.go"
)

// Headers of a relayed event. The event id travels as nats.MsgIdHdr
// (Nats-Msg-Id), which JetStream uses to drop duplicates.
const (
	HeaderType      = "Eventbus-Type"
	HeaderSender    = "Eventbus-Sender"
	HeaderSendType  = "Eventbus-Send-Type"  // "normal", "fifo" or "transaction"
	HeaderCreatedAt = "Eventbus-Created-At" // RFC 3339 with nanoseconds, UTC
	// HeaderMetadata holds, as a JSON object, the metadata entries that
	// cannot be headers of their own (see Encode).
	HeaderMetadata = "Eventbus-Metadata"
	// HeaderEventID carries the event id on messages whose Nats-Msg-Id is
	// not the event id: dead letters and replays of them.
	HeaderEventID = "Eventbus-Event-Id"
	// HeaderReplayFor marks a replayed dead letter: only the subscriber of
	// this durable consumer handles it; the others acknowledge it unhandled.
	HeaderReplayFor = "Eventbus-Replay-For"
)

// ErrNotAnEvent is wrapped by Decode's errors: the message lacks a header
// an event needs, or a field is invalid.
var ErrNotAnEvent = errors.New("relay: message is not a relayed event")

// Encode returns evt as a message on subject. Each metadata entry whose key
// is an HTTP header token not starting with "Nats-" or "Eventbus-" and
// whose value has no control characters or surrounding blanks becomes a
// header of its own, with the same name (so trace context such as
// "traceparent" reaches tools that read it); the rest go to
// HeaderMetadata as one JSON object. Decode reverses it exactly.
func Encode(subject string, evt *ddd.DomainEvent) (*nats.Msg, error) {
	if err := evt.Validate(); err != nil {
		return nil, err
	}
	h := nats.Header{
		nats.MsgIdHdr:   {evt.ID},
		HeaderType:      {evt.Type},
		HeaderSender:    {evt.Sender},
		HeaderSendType:  {evt.SendType.String()},
		HeaderCreatedAt: {evt.CreatedAt.UTC().Format(time.RFC3339Nano)},
	}
	var rest map[string]string
	for k, v := range evt.Metadata {
		if headerSafe(k, v) {
			h[k] = []string{v}
			continue
		}
		if rest == nil {
			rest = map[string]string{}
		}
		rest[k] = v
	}
	if rest != nil {
		b, err := json.Marshal(rest)
		if err != nil {
			return nil, fmt.Errorf("%w: metadata of %s: %v", ddd.ErrInvalidEvent, evt.ID, err)
		}
		h[HeaderMetadata] = []string{string(b)}
	}
	return &nats.Msg{Subject: subject, Header: h, Data: evt.Payload}, nil
}

// Decode rebuilds the event Encode turned into a message with these
// headers and data. Errors wrap ErrNotAnEvent.
func Decode(h nats.Header, data []byte) (*ddd.DomainEvent, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrNotAnEvent}, args...)...)
	}
	evt := &ddd.DomainEvent{
		ID:      eventID(h),
		Type:    h.Get(HeaderType),
		Sender:  h.Get(HeaderSender),
		Payload: data,
	}
	st, err := parseSendType(h.Get(HeaderSendType))
	if err != nil {
		return nil, bad("%v", err)
	}
	evt.SendType = st
	if evt.CreatedAt, err = time.Parse(time.RFC3339Nano, h.Get(HeaderCreatedAt)); err != nil {
		return nil, bad("%s: %v", HeaderCreatedAt, err)
	}
	for k, vs := range h {
		if len(vs) == 0 || reservedHeader(k) {
			continue
		}
		if evt.Metadata == nil {
			evt.Metadata = map[string]string{}
		}
		evt.Metadata[k] = vs[0]
	}
	if js := h.Get(HeaderMetadata); js != "" {
		var rest map[string]string
		if err := json.Unmarshal([]byte(js), &rest); err != nil {
			return nil, bad("%s: %v", HeaderMetadata, err)
		}
		if evt.Metadata == nil {
			evt.Metadata = make(map[string]string, len(rest))
		}
		for k, v := range rest {
			evt.Metadata[k] = v
		}
	}
	if err := evt.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAnEvent, err)
	}
	return evt, nil
}

func parseSendType(s string) (ddd.SendType, error) {
	for t := ddd.SendNormal; t <= ddd.SendTransaction; t++ {
		if s == t.String() {
			return t, nil
		}
	}
	if n, err := strconv.Atoi(s); err == nil && ddd.SendType(n).Valid() {
		return ddd.SendType(n), nil
	}
	return 0, fmt.Errorf("%s %q is not a send type", HeaderSendType, s)
}

// reservedHeader reports whether a header belongs to NATS or to this
// package rather than to the event's metadata.
func reservedHeader(k string) bool {
	return hasPrefixFold(k, "Nats-") || hasPrefixFold(k, "Eventbus-")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// headerSafe reports whether a metadata entry survives as a header of its
// own: NATS trims blanks around values and splits lines.
func headerSafe(k, v string) bool {
	if k == "" || reservedHeader(k) {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenChar(k[i]) {
			return false
		}
	}
	if v == "" || v[0] == ' ' || v[0] == '\t' || v[len(v)-1] == ' ' || v[len(v)-1] == '\t' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isTokenChar reports whether c may appear in an HTTP header name (RFC 9110 tchar).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// eventID is the event id of a relayed message (see HeaderEventID).
func eventID(h nats.Header) string {
	if id := h.Get(HeaderEventID); id != "" {
		return id
	}
	return h.Get(nats.MsgIdHdr)
}
