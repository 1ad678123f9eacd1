package relay

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dddbus/eventbus/ddd"
)

// SubjectFunc names the subject an event is published to.
type SubjectFunc func(evt *ddd.DomainEvent) (string, error)

// ErrInvalidSubject is wrapped when a SubjectFunc returns a subject NATS
// cannot publish to (empty tokens, wildcards, blanks).
var ErrInvalidSubject = errors.New("relay: invalid subject")

// SubjectFromType returns the default SubjectFunc: prefix, a dot, then the
// event type after its last '/' with each dot-separated part made a valid
// subject token (see SanitizeToken). "orders.OrderPlaced" with prefix
// "events" becomes "events.orders.OrderPlaced", so consumers can filter on
// "events.orders.>"; so does a default name with an import path,
// "github.com/acme/shop/orders.OrderPlaced", whose host's dots would
// otherwise split the path into tokens.
func SubjectFromType(prefix string) SubjectFunc {
	return func(evt *ddd.DomainEvent) (string, error) {
		typ := evt.Type[strings.LastIndexByte(evt.Type, '/')+1:]
		parts := strings.Split(typ, ".")
		for i, p := range parts {
			parts[i] = SanitizeToken(p)
		}
		return prefix + "." + strings.Join(parts, "."), nil
	}
}

// SanitizeToken makes s one valid subject token: every byte outside
// printable ASCII, and '.', '*' and '>', becomes '_'; an empty s becomes "_".
// Different inputs may give the same token; the event's type header keeps
// the original.
func SanitizeToken(s string) string {
	if s == "" {
		return "_"
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
			b[i] = '_'
		}
	}
	return string(b)
}

// ValidateSubject checks that s is a subject one can publish to: non-empty
// dot-separated tokens of printable ASCII, without wildcards.
func ValidateSubject(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return fmt.Errorf("%w: %q has an empty token", ErrInvalidSubject, s)
		}
		if tok == "*" || tok == ">" {
			return fmt.Errorf("%w: %q has a wildcard", ErrInvalidSubject, s)
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c <= ' ' || c >= 0x7f {
				return fmt.Errorf("%w: %q has a blank or non-ASCII byte", ErrInvalidSubject, s)
			}
		}
	}
	return nil
}

// subjectMatches reports whether subject matches pattern, whose tokens may
// be the wildcards "*" (one token) and ">" (the rest, at least one token).
func subjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		switch {
		case p == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case p != "*" && p != st[i]:
			return false
		}
	}
	return len(pt) == len(st)
}
