package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

// Half messages: a pending transaction's row (transactions) and its events
// (transaction_events) until it is resolved; on commit the events are
// appended to the log.

// BeginTx stores a pending transaction and its events on on (nil: in a
// transaction of the store's own).
func (s *base) BeginTx(ctx context.Context, on store.Conn, p store.BeginTxParams) (int64, error) {
	if on != nil {
		return s.beginTx(ctx, on, p)
	}
	var id int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		id, err = s.beginTx(ctx, tx, p)
		return err
	})
	return id, err
}

func (s *base) beginTx(ctx context.Context, on txConn, p store.BeginTxParams) (int64, error) {
	id, err := s.eng.insertTxRow(ctx, on, []any{p.Service, p.Token, p.DueMillis})
	if err != nil {
		return 0, fmt.Errorf("insert transaction: %w", err)
	}
	const per = 9
	args := make([]any, 0, len(p.Events)*per)
	sizes := make([]int, len(p.Events))
	for i, e := range p.Events {
		args = append(args, id, i)
		args = append(args, e.Values...)
		sizes[i] = e.Bytes
	}
	for start, end := 0, 0; start < len(sizes); start = end {
		end = s.chunkEnd(sizes, start)
		if _, err := on.ExecContext(ctx, s.q.insertTxEvents(end-start), args[start*per:end*per]...); err != nil {
			return 0, fmt.Errorf("insert transaction events: %w", err)
		}
	}
	return id, nil
}

// ResolveTx resolves a transaction in one database transaction: the state
// change is the guard (only one resolution succeeds), then the events are
// published (on commit) and removed. When nothing changed it reads what is
// stored, so the bus can say why.
func (s *base) ResolveTx(ctx context.Context, p store.ResolveTxParams) (store.ResolveOutcome, error) {
	var out store.ResolveOutcome
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		switch {
		case p.Claim > 0:
			res, err = tx.ExecContext(ctx, s.q.resolveTxClaimed, txCode(p.State), p.ID, p.Service, p.Claim)
		case p.Token != 0:
			res, err = tx.ExecContext(ctx, s.q.resolveTxToken, txCode(p.State), p.ID, p.Service, p.Token)
		default:
			res, err = tx.ExecContext(ctx, s.q.resolveTx, txCode(p.State), p.ID, p.Service)
		}
		if err != nil {
			return fmt.Errorf("resolve transaction %d: %w", p.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			if p.Claim > 0 {
				return nil
			}
			return s.readTxState(ctx, tx, p.ID, &out)
		}
		out.Resolved = true
		if p.State == store.TxCommitted {
			if _, err := tx.ExecContext(ctx, s.q.publishTx, p.ID); err != nil {
				return fmt.Errorf("publish transaction %d: %w", p.ID, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q.deleteTxEvents, p.ID); err != nil {
			return fmt.Errorf("resolve transaction %d: %w", p.ID, err)
		}
		return nil
	})
	return out, err
}

// readTxState fills out with what is stored of id, or the cleaner's mark.
func (s *base) readTxState(ctx context.Context, tx *sql.Tx, id int64, out *store.ResolveOutcome) error {
	var state int
	err := tx.QueryRowContext(ctx, s.q.txState, id).Scan(&state, &out.Service, &out.Token)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		out.Watermark, err = s.txWatermark(ctx, tx)
		return err
	case err != nil:
		return err
	}
	out.Found, out.State = true, store.TxState(state)
	return nil
}

// TxWatermark is the highest transaction id the cleaner removed.
func (s *base) TxWatermark(ctx context.Context) (int64, error) { return s.txWatermark(ctx, nil) }

func (s *base) txWatermark(ctx context.Context, on txConn) (int64, error) {
	var mark int64
	if err := s.queryRow(ctx, on, s.q.txWatermark, nil, &mark); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	return mark, nil
}

// DueTxs lists the service's pending transactions due for a check.
func (s *base) DueTxs(ctx context.Context, service string, limit int) ([]store.DueTx, error) {
	var out []store.DueTx
	err := s.query(ctx, nil, s.q.dueTxs, []any{service, limit}, func(rows *sql.Rows) error {
		var t store.DueTx
		if err := rows.Scan(&t.ID, &t.Checks); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// ClaimTx is a compare-and-set on check_count, read with the due list:
// the claimant knows which check is its own.
func (s *base) ClaimTx(ctx context.Context, id int64, checks int, claimMillis int64) (bool, error) {
	res, err := s.exec(ctx, nil, s.q.claimTx, claimMillis, id, checks)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// RescheduleTx records a check that resolved nothing while its claim holds.
func (s *base) RescheduleTx(ctx context.Context, p store.RescheduleTxParams) (bool, error) {
	res, err := s.exec(ctx, nil, s.q.rescheduleTx, txCode(p.State), p.DelayMillis, p.Reason, p.ID, p.Claim)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// TxEvents reads a pending transaction's events in order.
func (s *base) TxEvents(ctx context.Context, id int64) ([]*ddd.DomainEvent, error) {
	var out []*ddd.DomainEvent
	err := s.query(ctx, nil, s.q.txEventsOf, []any{id}, func(rows *sql.Rows) error {
		evt, err := scanEvent(rows)
		out = append(out, evt)
		return err
	})
	return out, err
}

// ListTxs pages a service's transactions in some states, through
// transactions_due (service, state, due_at).
func (s *base) ListTxs(ctx context.Context, p store.TxListParams) ([]store.TxRow, error) {
	args := make([]any, 0, len(p.States)+3)
	args = append(args, p.Service)
	for _, st := range p.States {
		args = append(args, int(st))
	}
	return s.txRows(ctx, s.eng.listTxs(len(p.States)), append(args, p.After, p.Limit))
}

// Tx reads one transaction by id.
func (s *base) Tx(ctx context.Context, id int64) (store.TxRow, bool, error) {
	out, err := s.txRows(ctx, s.q.txByID, []any{id})
	if err != nil || len(out) == 0 {
		return store.TxRow{}, false, err
	}
	return out[0], true, nil
}

// txRows runs a query of txInfoCols.
func (s *base) txRows(ctx context.Context, query string, args []any) ([]store.TxRow, error) {
	var out []store.TxRow
	err := s.query(ctx, nil, query, args, func(rows *sql.Rows) error {
		var t store.TxRow
		var state int
		if err := rows.Scan(&t.ID, &t.Service, &state, &t.Checks, &t.LastError, &t.DueAt, &t.CreatedAt, &t.UpdatedAt); err != nil {
			return err
		}
		t.State = store.TxState(state)
		out = append(out, t)
		return nil
	})
	return out, err
}

// CountUnresolvedTxs counts a service's unresolved transactions.
func (s *base) CountUnresolvedTxs(ctx context.Context, service string) (int64, error) {
	var n int64
	err := s.queryRow(ctx, nil, s.q.countUnresolved, []any{service}, &n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

// NextTxService returns the lowest service name above after with transactions.
func (s *base) NextTxService(ctx context.Context, after string) (string, bool, error) {
	var svc sql.NullString
	err := s.queryRow(ctx, nil, s.q.nextTxService, []any{after}, &svc)
	return svc.String, svc.Valid, err
}

// TxCounts counts a service's pending and unresolved transactions.
func (s *base) TxCounts(ctx context.Context, service string) (pending, unresolved int64, err error) {
	err = s.queryRow(ctx, nil, s.q.txCounts, []any{service, service}, &pending, &unresolved)
	return pending, unresolved, err
}
