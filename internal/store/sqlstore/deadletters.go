package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/dddbus/eventbus/internal/store"
)

// ListDeadLetters pages a service's dead letters matching a filter.
func (s *base) ListDeadLetters(ctx context.Context, p store.DeadLetterQuery) ([]store.DeadLetter, error) {
	query, fargs := s.deadLettersQuery(deadCols, p.Filter)
	var out []store.DeadLetter
	err := s.query(ctx, nil, query, append(append([]any{p.Service, p.After}, fargs...), p.Limit), func(rows *sql.Rows) error {
		var dl store.DeadLetter
		var err error
		dl.Event, err = scanEvent(rows, &dl.PK, &dl.Attempts, &dl.LastError, &dl.FailedAt, &dl.Seq)
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

// CountDeadLetters counts a service's dead letters.
func (s *base) CountDeadLetters(ctx context.Context, service string) (int64, error) {
	var n int64
	err := s.queryRow(ctx, nil, s.q.countDead, []any{service}, &n)
	return n, err
}

// ReplayDeadLetters replays dead letters by exact event ID, in one transaction.
func (s *base) ReplayDeadLetters(ctx context.Context, service string, ids []string) (int, error) {
	return s.eachDeadLetter(ctx, s.q.replayDead, service, ids)
}

// DiscardDeadLetters deletes dead letters by exact event ID, in one transaction.
func (s *base) DiscardDeadLetters(ctx context.Context, service string, ids []string) (int, error) {
	return s.eachDeadLetter(ctx, s.q.discardDead, service, ids)
}

func (s *base) eachDeadLetter(ctx context.Context, stmt, service string, ids []string) (int, error) {
	total := 0
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			res, err := tx.ExecContext(ctx, stmt, service, id)
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

// ReplayDeadLettersWhere replays every match of f, batch by batch.
func (s *base) ReplayDeadLettersWhere(ctx context.Context, service string, f store.DeadLetterFilter) (int, error) {
	return s.eachDeadLetterWhere(ctx, service, f, "UPDATE "+s.q.retries+" SET state = {retry}, attempts = 0, next_at = "+s.q.now+", updated_at = "+s.q.now)
}

// DiscardDeadLettersWhere deletes every match of f, batch by batch.
func (s *base) DiscardDeadLettersWhere(ctx context.Context, service string, f store.DeadLetterFilter) (int, error) {
	return s.eachDeadLetterWhere(ctx, service, f, "DELETE FROM "+s.q.retries)
}

// eachDeadLetterWhere applies change (an UPDATE or DELETE of retries,
// without its WHERE) to the matching dead letters, batch by batch, after a
// cursor on seq, each batch its own transaction.
func (s *base) eachDeadLetterWhere(ctx context.Context, service string, f store.DeadLetterFilter, change string) (int, error) {
	pick, fargs := s.deadLettersQuery("r.event_pk, r.seq", f)
	total := 0
	after := int64(-1)
	for {
		args := []any{service}
		err := s.query(ctx, nil, pick, append(append([]any{service, after}, fargs...), cleanBatch), func(rows *sql.Rows) error {
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
		// Dead again: a row replayed meanwhile is left alone.
		stmt := s.q.sql(change + " WHERE service = ? AND state = {dead} AND event_pk IN " + in(picked))
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			res, err := s.exec(ctx, tx, stmt, args...)
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

// deadLettersQuery selects cols of a service's dead letters matching f
// after a seq, in log order; its arguments are the service, the seq, the
// returned ones, and the limit. The retry store's primary key (service,
// event_pk) and retries_due (service, state, next_at) find the service's
// dead letters; each one's event is read by its primary key.
func (s *base) deadLettersQuery(cols string, f store.DeadLetterFilter) (string, []any) {
	cond, args := filterWhere(f, s.q.now)
	return s.q.sql("SELECT " + cols + " FROM " + s.q.retries + " r JOIN " + s.q.events + " e ON e.id = r.event_pk" +
		" WHERE r.service = ? AND r.state = {dead} AND r.seq > ?" + cond + " ORDER BY r.seq LIMIT ?"), args
}

// filterWhere returns f's conditions on retries r joined with events e,
// each starting with " AND", and their arguments.
func filterWhere(f store.DeadLetterFilter, now string) (string, []any) {
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
	if f.OlderThanMillis > 0 {
		b.WriteString(" AND r.updated_at <= " + now + " - ?")
		args = append(args, f.OlderThanMillis)
	}
	if f.NewerThanMillis > 0 {
		b.WriteString(" AND r.updated_at > " + now + " - ?")
		args = append(args, f.NewerThanMillis)
	}
	return b.String(), args
}
