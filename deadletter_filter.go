package eventbus

import (
	"context"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/internal/store"
)

// DeadLetterFilter selects dead letters of the bus's service. Every field
// that is set must match; the zero filter matches them all.
type DeadLetterFilter struct {
	EventIDs []string // any of these event IDs
	Types    []string // any of these event types
	Senders  []string // any of these senders
	// OlderThan, if positive, keeps dead letters that failed at least this
	// long ago; NewerThan, if positive, those that failed less than this
	// long ago. Both on the database clock.
	OlderThan time.Duration
	NewerThan time.Duration
}

func (f DeadLetterFilter) validate() error {
	if f.OlderThan < 0 || f.NewerThan < 0 {
		return fmt.Errorf("%w: dead letter filter ages must be >= 0", ErrInvalidArgument)
	}
	if n := len(f.EventIDs) + len(f.Types) + len(f.Senders); n > 1000 {
		return fmt.Errorf("%w: dead letter filter lists at most 1000 values in all, got %d", ErrInvalidArgument, n)
	}
	return nil
}

// stored is f as the store takes it.
func (f DeadLetterFilter) stored() store.DeadLetterFilter {
	return store.DeadLetterFilter{EventIDs: f.EventIDs, Types: f.Types, Senders: f.Senders,
		OlderThanMillis: f.OlderThan.Milliseconds(), NewerThanMillis: f.NewerThan.Milliseconds()}
}

// DeadLettersWhere lists this service's dead letters that match f, with
// Seq > afterSeq, in log order, at most limit (1..1000). Page with the Seq
// of the last one.
func (b *EventBus) DeadLettersWhere(ctx context.Context, f DeadLetterFilter, afterSeq int64, limit int) ([]DeadLetter, error) {
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit must be 1..1000, got %d", ErrInvalidArgument, limit)
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return b.deadLetters(ctx, store.DeadLetterQuery{Service: b.service, Filter: f.stored(), After: afterSeq, Limit: limit})
}

// ReplayDeadLettersWhere schedules every dead letter of this service that
// matches f for another attempt at the next poll, with a fresh retry
// budget (as ReplayDeadLetters does by ID), and returns how many it
// replayed. It works in batches of 500, each its own transaction, in log
// order; a dead letter replayed, failing again and dead again while it
// runs is not replayed twice.
func (b *EventBus) ReplayDeadLettersWhere(ctx context.Context, f DeadLetterFilter) (int, error) {
	if err := f.validate(); err != nil {
		return 0, err
	}
	n, err := b.st.ReplayDeadLettersWhere(ctx, b.service, f.stored())
	if n > 0 {
		b.Notify()
	}
	return n, err
}

// DiscardDeadLettersWhere deletes every dead letter of this service that
// matches f (the zero filter: all of them) and returns how many it deleted,
// in batches of 500 as ReplayDeadLettersWhere.
func (b *EventBus) DiscardDeadLettersWhere(ctx context.Context, f DeadLetterFilter) (int, error) {
	if err := f.validate(); err != nil {
		return 0, err
	}
	return b.st.DiscardDeadLettersWhere(ctx, b.service, f.stored())
}
