package eventbus

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
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

// where returns the filter's conditions on retries r joined with events e,
// each starting with " AND", and their arguments.
func (f DeadLetterFilter) where(now string) (string, []any) {
	var b strings.Builder
	var args []any
	list := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		b.WriteString(" AND " + col + " IN " + in(len(vals)))
		for _, v := range vals {
			args = append(args, v)
		}
	}
	list("r.event_id", f.EventIDs)
	list("e.event_type", f.Types)
	list("r.sender", f.Senders)
	if f.OlderThan > 0 {
		b.WriteString(" AND r.updated_at <= " + now + " - ?")
		args = append(args, f.OlderThan.Milliseconds())
	}
	if f.NewerThan > 0 {
		b.WriteString(" AND r.updated_at > " + now + " - ?")
		args = append(args, f.NewerThan.Milliseconds())
	}
	return b.String(), args
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
	query, fargs := b.deadLettersQuery("r.event_pk, r.attempts, r.last_error, r.updated_at, e.seq, e.event_id, e.event_type, e.sender, e.send_type, e.payload, e.metadata, e.occurred_at", f)
	return b.deadLetters(ctx, query, append(append([]any{b.service, afterSeq}, fargs...), limit))
}

// deadLetters runs a query of listDead's columns.
func (b *EventBus) deadLetters(ctx context.Context, query string, args []any) ([]DeadLetter, error) {
	var out []DeadLetter
	err := b.query(ctx, nil, query, args, func(rows *sql.Rows) error {
		dl, err := scanDeadLetter(rows)
		if err == nil {
			out = append(out, dl)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

// ReplayDeadLettersWhere schedules every dead letter of this service that
// matches f for another attempt at the next poll, with a fresh retry
// budget (as ReplayDeadLetters does by ID), and returns how many it
// replayed. It works in batches of 500, each its own transaction, in log
// order; a dead letter replayed, failing again and dead again while it
// runs is not replayed twice.
func (b *EventBus) ReplayDeadLettersWhere(ctx context.Context, f DeadLetterFilter) (int, error) {
	n, err := b.eachDeadLetterWhere(ctx, f, "UPDATE "+b.q.retries+" SET state = 0, attempts = 0, next_at = "+b.q.now+", updated_at = "+b.q.now)
	if n > 0 {
		b.Notify()
	}
	return n, err
}

// DiscardDeadLettersWhere deletes every dead letter of this service that
// matches f (the zero filter: all of them) and returns how many it deleted,
// in batches of 500 as ReplayDeadLettersWhere.
func (b *EventBus) DiscardDeadLettersWhere(ctx context.Context, f DeadLetterFilter) (int, error) {
	return b.eachDeadLetterWhere(ctx, f, "DELETE FROM "+b.q.retries)
}

// eachDeadLetterWhere applies change (an UPDATE or DELETE of retries,
// without its WHERE) to the matching dead letters, batch by batch, after a
// cursor on seq.
func (b *EventBus) eachDeadLetterWhere(ctx context.Context, f DeadLetterFilter, change string) (int, error) {
	if err := f.validate(); err != nil {
		return 0, err
	}
	pick, fargs := b.deadLettersQuery("r.event_pk, r.seq", f)
	total := 0
	after := int64(-1)
	for {
		args := []any{b.service}
		err := b.query(ctx, nil, pick, append(append([]any{b.service, after}, fargs...), cleanBatch), func(rows *sql.Rows) error {
			var pk int64
			if err := rows.Scan(&pk, &after); err != nil {
				return err
			}
			args = append(args, pk)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("dead letters: %w", err)
		}
		picked := len(args) - 1
		if picked == 0 {
			return total, nil
		}
		// state = 1 again: a row replayed meanwhile is left alone.
		stmt := b.d.rebind(change + " WHERE service = ? AND state = 1 AND event_pk IN " + in(picked))
		err = b.inTx(ctx, func(tx *sql.Tx) error {
			res, err := b.exec(ctx, tx, stmt, args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			total += int(n)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("dead letters: %w", err)
		}
		if picked < cleanBatch {
			return total, nil
		}
	}
}

// deadLettersQuery selects cols of this service's dead letters matching f
// after a seq, in log order; its arguments are the service, the seq, the
// returned ones, and the limit. The retry store's primary key (service,
// event_pk) and retries_due (service, state, next_at) find the service's
// dead letters; each one's event is read by its primary key.
func (b *EventBus) deadLettersQuery(cols string, f DeadLetterFilter) (string, []any) {
	cond, args := f.where(b.q.now)
	return b.d.rebind("SELECT " + cols + " FROM " + b.q.retries + " r JOIN " + b.q.events + " e ON e.id = r.event_pk" +
		" WHERE r.service = ? AND r.state = 1 AND r.seq > ?" + cond + " ORDER BY r.seq LIMIT ?"), args
}

// scanDeadLetter reads a dead letter selected as listDead's columns.
func scanDeadLetter(rows *sql.Rows) (DeadLetter, error) {
	var dl DeadLetter
	var pk, failed int64
	evt, err := scanEvent(rows, &pk, &dl.Attempts, &dl.LastError, &failed, &dl.Seq)
	if err != nil {
		return dl, err
	}
	dl.Event, dl.FailedAt = evt, time.UnixMilli(failed).UTC()
	return dl, nil
}
