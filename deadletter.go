package eventbus

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/ddd"
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
	return b.deadLetters(ctx, b.q.listDead, []any{b.service, afterSeq, limit})
}

// CountDeadLetters returns how many dead letters this service has.
func (b *EventBus) CountDeadLetters(ctx context.Context) (int64, error) {
	var n int64
	if err := b.queryRow(ctx, nil, b.q.countDead, []any{b.service}, &n); err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}

// ReplayDeadLetters schedules the dead letters with these event IDs for
// another attempt at the next poll, with a fresh retry budget, and returns
// how many it found. Replaying an event that is no longer a dead letter
// (already replayed, say) does nothing, so a replay never delivers twice.
func (b *EventBus) ReplayDeadLetters(ctx context.Context, eventIDs ...string) (int, error) {
	n, err := b.eachDeadLetter(ctx, b.q.replayDead, eventIDs)
	if n > 0 {
		b.Notify()
	}
	return n, err
}

// DiscardDeadLetters deletes the dead letters with these event IDs and
// returns how many it found.
func (b *EventBus) DiscardDeadLetters(ctx context.Context, eventIDs ...string) (int, error) {
	return b.eachDeadLetter(ctx, b.q.discardDead, eventIDs)
}

func (b *EventBus) eachDeadLetter(ctx context.Context, stmt string, ids []string) (int, error) {
	total := 0
	err := b.inTx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			res, err := tx.ExecContext(ctx, stmt, b.service, id)
			if err != nil {
				return fmt.Errorf("dead letter %s: %w", id, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			total += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return total, nil
}
