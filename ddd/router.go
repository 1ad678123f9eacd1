package ddd

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Router routes events to handlers by event type. Bounded contexts register
// on it with On or Handle, and the service hands Router.HandleEvent to the
// bus's RegisterEventHandler.
//
// When several handlers share a type they run one after another, and the
// event fails if any of them fails; a retry runs all of them again, so each
// must be idempotent (or give each bounded context its own service name).
//
// A name stands for one Go type: On refuses a second type under a name
// already bound to another (ErrTypeNameConflict), so two event types can
// never be mixed up silently. Events stored under an earlier name reach
// the handlers of the current one through Alias.
//
// The zero Router is ready to use; so is one from NewRouter. A nil *Router
// returns errors, never panics.
type Router struct {
	mu      sync.RWMutex
	routes  map[string][]DomainEventHandler
	types   map[string]reflect.Type // name -> the Go type On decodes it into
	aliases map[string]alias        // earlier name -> current name
	opts    []DecodeOption
	noOld   bool
}

// alias maps an earlier name to the current one. Implicit aliases are the
// legacy names On adds; ambiguous ones were claimed by several types.
type alias struct {
	to        string
	implicit  bool
	ambiguous []string // the current names that claim it, when ambiguous
}

// RouterOption configures a Router.
type RouterOption func(*Router)

// StrictDecoding makes On's handlers refuse payloads with fields their type
// does not have (see DisallowUnknownFields). By default such fields are
// ignored, so producers can add fields before consumers know them.
func StrictDecoding() RouterOption {
	return func(r *Router) { r.opts = append(r.opts, DisallowUnknownFields()) }
}

// WithoutLegacyNames stops On from accepting events stored under the legacy
// name of its type (see LegacyTypeName). Use it once no stored event and no
// running producer uses legacy names.
func WithoutLegacyNames() RouterOption { return func(r *Router) { r.noOld = true } }

// NewRouter returns an empty router.
//
// By default On also routes events stored under its type's legacy name
// (LegacyTypeName: package name and type name, the default of earlier
// versions) to the type's handlers, so that upgrading a consumer does not
// skip the events older producers wrote. If two of the router's types
// share a legacy name, an event under that name fails (it is retried and
// becomes a dead letter, never skipped or handled by the wrong type) until
// an Alias says which type it is. WithoutLegacyNames turns this off.
func NewRouter(opts ...RouterOption) *Router {
	r := &Router{}
	for _, o := range opts {
		if o != nil {
			o(r)
		}
	}
	return r
}

// ErrInvalidHandler is returned when registering a nil handler or an empty
// type, or using a nil Router.
var ErrInvalidHandler = errors.New("invalid handler")

// ErrTypeNameConflict is returned when a name is claimed by two Go types,
// or by a type and an alias, on one router.
var ErrTypeNameConflict = errors.New("event type name conflict")

func (r *Router) initLocked() {
	if r.routes == nil {
		r.routes = map[string][]DomainEventHandler{}
		r.types = map[string]reflect.Type{}
		r.aliases = map[string]alias{}
	}
}

// Handle registers h for events whose Type is eventType. It does not bind
// the name to a Go type (h decodes what it wants), so it can share a name
// with On's handlers; it cannot take a name that Alias maps to another.
func (r *Router) Handle(eventType string, h DomainEventHandler) error {
	if r == nil {
		return fmt.Errorf("%w: nil router", ErrInvalidHandler)
	}
	if eventType == "" || h == nil {
		return fmt.Errorf("%w: event type %q, handler nil=%t", ErrInvalidHandler, eventType, h == nil)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addLocked(eventType, nil, h)
}

// addLocked registers h under name, bound to Go type rt if it is not nil.
func (r *Router) addLocked(name string, rt reflect.Type, h DomainEventHandler) error {
	r.initLocked()
	if a, ok := r.aliases[name]; ok && !a.implicit {
		return fmt.Errorf("%w: %q is an alias of %q", ErrTypeNameConflict, name, a.to)
	}
	if rt != nil {
		if have, ok := r.types[name]; ok && have != rt {
			return fmt.Errorf("%w: %q is the name of %s; %s needs another (an EventType method)",
				ErrTypeNameConflict, name, typeString(have), typeString(rt))
		}
		r.types[name] = rt
	}
	r.routes[name] = append(r.routes[name], h)
	return nil
}

// typeString names a Go type with its import path.
func typeString(rt reflect.Type) string {
	if rt.PkgPath() != "" {
		return rt.PkgPath() + "." + rt.Name()
	}
	return rt.String()
}

// Alias routes events stored under the earlier name old to the handlers of
// current, for example after renaming an event type or giving it an
// EventType method: the stored events keep their name forever, so a
// renamed type's handlers would miss them otherwise. old must not have
// handlers of its own, nor be an alias of another name or the target of
// one (aliases are not followed twice).
func (r *Router) Alias(old, current string) error {
	if r == nil {
		return fmt.Errorf("%w: nil router", ErrInvalidHandler)
	}
	if old == "" || current == "" || old == current {
		return fmt.Errorf("%w: alias %q of %q", ErrInvalidHandler, old, current)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.initLocked()
	if len(r.routes[old]) > 0 {
		return fmt.Errorf("%w: %q has handlers of its own", ErrTypeNameConflict, old)
	}
	if a, ok := r.aliases[current]; ok && !a.implicit {
		return fmt.Errorf("%w: %q is itself an alias of %q", ErrTypeNameConflict, current, a.to)
	}
	if a, ok := r.aliases[old]; ok && !a.implicit && a.to != current {
		return fmt.Errorf("%w: %q is already an alias of %q", ErrTypeNameConflict, old, a.to)
	}
	for from, a := range r.aliases {
		if !a.implicit && a.to == old {
			return fmt.Errorf("%w: %q is an alias of %q; make it an alias of %q instead", ErrTypeNameConflict, from, old, current)
		}
	}
	r.aliases[old] = alias{to: current}
	return nil
}

// On registers a typed handler for events of type T, named as TypeName[T]
// names it (and, unless the router says otherwise, also under T's legacy
// name; see NewRouter). It refuses a name that another Go type already
// has on this router. The payload is decoded with Decode: one that does not
// fit T is a failure (wrapping ErrPayloadMismatch), retried and then made
// a dead letter, never handed to h as a zero value.
func On[T any](r *Router, h func(ctx context.Context, evt *DomainEvent, payload T) error) error {
	if r == nil || h == nil {
		return fmt.Errorf("%w: nil router or handler", ErrInvalidHandler)
	}
	name, err := TypeName[T]()
	if err != nil {
		return err
	}
	rt := derefType(reflect.TypeFor[T]())
	r.mu.Lock()
	defer r.mu.Unlock()
	opts := r.opts
	if err := r.addLocked(name, rt, func(ctx context.Context, evt *DomainEvent) error {
		var payload T
		if err := evt.Decode(&payload, opts...); err != nil {
			return err
		}
		return h(ctx, evt, payload)
	}); err != nil {
		return err
	}
	if old, ok := legacyNameOf(rt); ok && !r.noOld && old != name {
		r.addLegacyLocked(old, name)
	}
	return nil
}

// addLegacyLocked maps legacy name old to current unless the user routed
// old explicitly; a legacy name claimed by two types becomes ambiguous.
func (r *Router) addLegacyLocked(old, current string) {
	a, ok := r.aliases[old]
	switch {
	case !ok:
		r.aliases[old] = alias{to: current, implicit: true}
	case !a.implicit || a.to == current:
		// An explicit alias decides; the same type again changes nothing.
	case !containsString(a.ambiguous, current):
		if a.ambiguous == nil {
			a.ambiguous = []string{a.to}
		}
		a.ambiguous = append(a.ambiguous, current)
		sort.Strings(a.ambiguous)
		r.aliases[old] = a
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// handlersFor returns the handlers of name, following an alias; an
// ambiguous legacy name is an error.
func (r *Router) handlersFor(name string) ([]DomainEventHandler, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if hs := r.routes[name]; len(hs) > 0 {
		return hs, nil
	}
	a, ok := r.aliases[name]
	if !ok {
		return nil, nil
	}
	if len(a.ambiguous) > 0 {
		return nil, fmt.Errorf("%w: %q is the legacy name of %s; say which with Router.Alias",
			ErrTypeNameConflict, name, strings.Join(a.ambiguous, " and "))
	}
	return r.routes[a.to], nil
}

// HandleEvent is a DomainEventHandler: it runs every handler registered for
// evt.Type (or the name it is an alias of). It returns ErrNoHandler when
// there is none, or when every one of them answered ErrNoHandler (a nested
// router without a route); otherwise the failures joined, leaving out the
// ErrNoHandler answers, so that a real failure is never mistaken for
// "nothing to do".
func (r *Router) HandleEvent(ctx context.Context, evt *DomainEvent) error {
	if r == nil {
		return fmt.Errorf("%w: nil router", ErrInvalidHandler)
	}
	if evt == nil {
		return fmt.Errorf("%w: nil event", ErrInvalidEvent)
	}
	hs, err := r.handlersFor(evt.Type)
	if err != nil {
		return err
	}
	var errs []error
	handled := false
	for _, h := range hs {
		switch err := h(ctx, evt); {
		case err == nil:
			handled = true
		case IsNoHandler(err):
		default:
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && !handled {
		return ErrNoHandler
	}
	return errors.Join(errs...)
}
