package eventbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/dddbus/eventbus/ddd"
)

// BatchHandler handles a batch of events in one call: evts are the
// service's (or a partition's) next events, in log order, as many as a
// batch reads (LimitPerRun). It returns how many of them, from the first,
// are finished. See RegisterBatchHandler.
type BatchHandler func(ctx context.Context, evts []*ddd.DomainEvent) (finished int, err error)

// RegisterBatchHandler sets h as the service's handler: the bus calls it
// with each batch instead of one call per event. It is for handlers that
// gain from seeing many events at once (a relay to a broker pipelining its
// publishes, a bulk insert). Like RegisterEventHandler it registers the
// service and may be called once, before Start; a bus has either a batch
// handler or an event handler (ErrHandlerRegistered for the second one),
// and nil is ErrInvalidHandler.
//
// Guarantees:
//   - One batch call at a time, with the events in log order; the next
//     call starts after the previous one returned and its result was
//     committed.
//   - The offset moves past the first finished events only (clamped to
//     len(evts); a negative count, or more than len(evts), counts as none
//     finished and as an error), in the same fenced commit as per-event
//     handling: if the lease was lost meanwhile, nothing is committed and
//     the new owner delivers the batch again. The others are delivered
//     again, in order, at the next poll, as the first events of the next
//     batch. So a batch handler sees every event at least once; an event
//     after a returned prefix may have been seen before (use the event id
//     to deduplicate).
//   - err == nil and finished == len(evts): the next batch comes at once.
//     err == nil and fewer finished: the rest comes at the next poll
//     (RunInterval, or a wake-up). err != nil: the finished prefix is
//     committed and the poll backs off as a failed poll does (RunInterval
//     doubling up to 10s, logged), so a broken downstream does not spin.
//   - An err that is ddd.Permanent makes evts[finished] (when finished <
//     len(evts)) a dead letter of the service at once, with err as its
//     last error: the offset moves past it too and the next batch comes at
//     once. That is how a handler gives up on one event that can never
//     succeed without holding back the events after it.
//   - ctx is like a per-event handler's: it carries Start's values, stays
//     live ShutdownGrace after Start's context is cancelled, and is
//     cancelled then, or when the lease is lost or cannot be renewed (the
//     heartbeat renews it while the call runs). What the call reports
//     finished after that is still committed if the lease allows it.
//   - A panic is recovered and counts as an error with nothing finished.
//
// What does not apply to a batch handler: HandlerTimeout (a call runs until
// it returns or its context is cancelled: bound its own waits), the retry
// strategy and the retry store for failures (a failed event stays ahead of
// the offset instead, and its sender's later events wait behind it),
// FIFO parking, and the Observer's per-event handler calls. Partitions
// work as for event handlers: each partition's batches are its own events,
// one call per partition's batch. Stats counts finished events as Handled,
// and failed calls as Failed.
//
// Events in the retry store (dead letters replayed with ReplayDeadLetters,
// or retries left by an event handler the service had before) are handled
// by the retry phase, after the batch, as batches of one with the retry
// strategy, as event handler calls are: one sender at a time, several
// senders at once (ConsumeConcurrent), so h must be safe for concurrent
// calls if such events can exist.
func (b *EventBus) RegisterBatchHandler(h BatchHandler) error {
	if h == nil {
		return fmt.Errorf("%w: nil batch handler", ErrInvalidHandler)
	}
	if err := b.RegisterEventHandler(batchOfOne(h)); err != nil {
		return err
	}
	b.mu.Lock()
	b.batch = h
	b.mu.Unlock()
	return nil
}

// batchOfOne is the event handler the retry phase calls for a bus with a
// batch handler.
func batchOfOne(h BatchHandler) ddd.DomainEventHandler {
	return func(ctx context.Context, evt *ddd.DomainEvent) error {
		n, err := h(ctx, []*ddd.DomainEvent{evt})
		switch {
		case n == 1:
			return nil
		case err != nil:
			return err
		default:
			return errors.New("eventbus: batch handler did not finish the event")
		}
	}
}
