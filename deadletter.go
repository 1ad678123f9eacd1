package eventbus

import (
	"context"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

// DeadLetter is an event this service gave up on: the retry strategy ran
// out, or the handler returned a ddd.Permanent error. It stays until
// replayed or discarded (or DeadLetterRetention passes).
type DeadLetter struct {
	Event     *ddd.DomainEvent
	Seq       int64 // log position; page with it
	Attempts  int
	LastError string
	FailedAt  time.Time
}

// DeadLetters lists this service's dead letters with Seq > afterSeq, in log
// order, at most limit (1..1000).
func (b *EventBus) DeadLetters(ctx context.Context, afterSeq int64, limit int) ([]DeadLetter, error) {
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit must be 1..1000, got %d", ErrInvalidArgument, limit)
	}
	return b.deadLetters(ctx, store.DeadLetterQuery{Service: b.service, After: afterSeq, Limit: limit})
}

// CountDeadLetters returns how many dead letters this service has.
func (b *EventBus) CountDeadLetters(ctx context.Context) (int64, error) {
	n, err := b.st.CountDeadLetters(ctx, b.service)
	if err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}

// ReplayDeadLetters schedules the dead letters with these event IDs for
// another attempt at the next poll, with a fresh retry budget, and returns
// how many it found. Replaying an event that is no longer a dead letter
// (already replayed, say) does nothing, so a replay never delivers twice.
func (b *EventBus) ReplayDeadLetters(ctx context.Context, eventIDs ...string) (int, error) {
	n, err := b.st.ReplayDeadLetters(ctx, b.service, eventIDs)
	if n > 0 {
		b.Notify()
	}
	return n, err
}

// DiscardDeadLetters deletes the dead letters with these event IDs and
// returns how many it found.
func (b *EventBus) DiscardDeadLetters(ctx context.Context, eventIDs ...string) (int, error) {
	return b.st.DiscardDeadLetters(ctx, b.service, eventIDs)
}

// deadLetters reads a page of dead letters.
func (b *EventBus) deadLetters(ctx context.Context, q store.DeadLetterQuery) ([]DeadLetter, error) {
	rows, err := b.st.ListDeadLetters(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetter, len(rows))
	for i, r := range rows {
		out[i] = DeadLetter{Event: r.Event, Seq: r.Seq, Attempts: r.Attempts, LastError: r.LastError, FailedAt: time.UnixMilli(r.FailedAt).UTC()}
	}
	return out, nil
}
