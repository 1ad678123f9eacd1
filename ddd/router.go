package ddd

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Router routes events to handlers by event type. Bounded contexts register
// on it with On or Handle, and the service hands Router.HandleEvent to the
// bus's RegisterEventHandler.
//
// When several handlers share a type they run one after another, and the
// event fails if any of them fails; a retry runs all of them again, so each
// must be idempotent (or give each bounded context its own service name).
type Router struct {
	mu     sync.RWMutex
	routes map[string][]DomainEventHandler
}

// NewRouter returns an empty router.
func NewRouter() *Router { return &Router{routes: map[string][]DomainEventHandler{}} }

// ErrInvalidHandler is returned when registering a nil handler or an empty type.
var ErrInvalidHandler = errors.New("invalid handler")

// Handle registers h for events whose Type is eventType.
func (r *Router) Handle(eventType string, h DomainEventHandler) error {
	if eventType == "" || h == nil {
		return fmt.Errorf("%w: event type %q, handler nil=%t", ErrInvalidHandler, eventType, h == nil)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes[eventType] = append(r.routes[eventType], h)
	return nil
}

// On registers a typed handler for events of type T (named as TypeName[T]
// names it). A payload that does not decode into T is a permanent failure:
// the event goes straight to the dead letters.
func On[T any](r *Router, h func(ctx context.Context, evt *DomainEvent, payload T) error) error {
	if r == nil || h == nil {
		return fmt.Errorf("%w: nil router or handler", ErrInvalidHandler)
	}
	name, err := TypeName[T]()
	if err != nil {
		return err
	}
	return r.Handle(name, func(ctx context.Context, evt *DomainEvent) error {
		var payload T
		if err := evt.Decode(&payload); err != nil {
			return Permanent(err)
		}
		return h(ctx, evt, payload)
	})
}

// HandleEvent is a DomainEventHandler: it runs every handler registered for
// evt.Type. It returns ErrNoHandler when there is none, or when every one of
// them answered ErrNoHandler (a nested router without a route); otherwise
// the failures joined, leaving out the ErrNoHandler answers, so that a real
// failure is never mistaken for "nothing to do".
func (r *Router) HandleEvent(ctx context.Context, evt *DomainEvent) error {
	r.mu.RLock()
	hs := r.routes[evt.Type]
	r.mu.RUnlock()
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
