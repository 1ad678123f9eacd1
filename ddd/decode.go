package ddd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrPayloadMismatch is wrapped by Decode's errors: the payload is not
// something the target type could have been encoded as. A typed handler
// (On) returns it as an ordinary failure, so the event is retried and then
// becomes a dead letter; it is never handled as a zero value.
var ErrPayloadMismatch = errors.New("payload does not fit the event type")

// DecodeOption changes how Decode checks a payload.
type DecodeOption func(*decodeConfig)

type decodeConfig struct{ strict bool }

// DisallowUnknownFields makes a payload field that the target type does not
// have an error, like json.Decoder.DisallowUnknownFields.
func DisallowUnknownFields() DecodeOption { return func(c *decodeConfig) { c.strict = true } }

// Decode unmarshals the payload into v (a non-nil pointer) and checks that
// it fits: that a value of v's type could have been encoded as this payload,
// apart from fields the type does not have. Errors wrap ErrPayloadMismatch
// when the payload
//
//   - is null, or a JSON value of another kind than the type's (an object
//     for a string, a string for a number...);
//   - lacks a field that the type always encodes: at any depth, every field
//     without the omitempty or omitzero option must be present (names match
//     as encoding/json matches them, case-insensitively);
//   - has null where the type encodes a value (a string, number, bool,
//     struct or array field; null is fine for pointers, slices, maps and
//     interfaces, which encode as null themselves);
//   - has an array of another length than a Go array field;
//   - with DisallowUnknownFields, has a field the type does not have.
//
// So a payload of another event type that happens to be an object, which
// json.Unmarshal would silently turn into a zero value, is an error. To add
// a field to an event type whose older stored events lack it, tag it
// omitempty (or omitzero). Types with their own MarshalJSON must encode
// what they decode for the check to be meaningful.
func (e *DomainEvent) Decode(v any, opts ...DecodeOption) error {
	if e == nil {
		return fmt.Errorf("%w: nil event", ErrInvalidEvent)
	}
	var cfg decodeConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("decode %s %s into %T: %w: "+format, append([]any{e.Type, e.ID, v, ErrPayloadMismatch}, args...)...)
	}
	if bytes.Equal(bytes.TrimSpace(e.Payload), []byte("null")) {
		return fail("the payload is null")
	}
	dec := json.NewDecoder(bytes.NewReader(e.Payload))
	if cfg.strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return fail("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail("data after the JSON value")
	}
	// What a value of v's type encodes as, compared with the payload: the
	// keys it always writes (fields without omitempty) must be there.
	enc, err := json.Marshal(v)
	if err != nil {
		return fail("cannot encode the type to check the payload: %v", err)
	}
	var got, want any
	if err := json.Unmarshal(e.Payload, &got); err != nil {
		return fail("%v", err)
	}
	if err := json.Unmarshal(enc, &want); err != nil {
		return fail("cannot read the type's encoding: %v", err)
	}
	if msg := fits(got, want, "$"); msg != "" {
		return fail("%s", msg)
	}
	return nil
}

// fits compares a payload tree with the encoding of the value decoded from
// it and describes the first difference that means the payload did not fit.
// Scalars are not compared (their text may differ, e.g. 1.0 and 1), only
// presence and shape.
func fits(got, want any, path string) string {
	switch w := want.(type) {
	case nil:
		return ""
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return mismatchAt(got, path, "an object")
		}
		for k, wv := range w {
			gv, ok := lookupField(g, k)
			if !ok {
				return "missing field " + path + "." + k
			}
			if msg := fits(gv, wv, path+"."+k); msg != "" {
				return msg
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return mismatchAt(got, path, "an array")
		}
		if len(g) != len(w) {
			return fmt.Sprintf("%s has %d elements, the type holds %d", path, len(g), len(w))
		}
		for i := range w {
			if msg := fits(g[i], w[i], path+"["+strconv.Itoa(i)+"]"); msg != "" {
				return msg
			}
		}
	default:
		if got == nil {
			return "null at " + path + ", where the type always has a value"
		}
	}
	return ""
}

// mismatchAt reports null where a value is needed; other kinds cannot
// differ after a successful decode unless a custom marshaler changed them,
// which is its business.
func mismatchAt(got any, path, what string) string {
	if got == nil {
		return "null at " + path + ", where the type always has " + what
	}
	return ""
}

// lookupField finds key k as encoding/json matches it: exactly, or else
// case-insensitively.
func lookupField(m map[string]any, k string) (any, bool) {
	if v, ok := m[k]; ok {
		return v, true
	}
	for mk, v := range m {
		if strings.EqualFold(mk, k) {
			return v, true
		}
	}
	return nil, false
}
