package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dddbus/eventbus/internal/store"
)

// ServiceStatuses reads every service with its backlog counts.
func (s *base) ServiceStatuses(ctx context.Context) ([]store.ServiceRow, error) {
	var out []store.ServiceRow
	err := s.query(ctx, nil, s.q.serviceStatus, nil, func(rows *sql.Rows) error {
		var r store.ServiceRow
		if err := rows.Scan(&r.Name, &r.ConsumedSeq, &r.Owner, &r.LeaseUntil, &r.StandbyUntil, &r.UpdatedAt, &r.Partitions, &r.Parent, &r.Part, &r.HeadSeq, &r.Pending, &r.Retrying, &r.DeadLetters); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// RemoveService deletes an idle service and its retries in one
// transaction; if it is not idle, it reports who runs it.
func (s *base) RemoveService(ctx context.Context, name string) (store.RemoveOutcome, error) {
	var out store.RemoveOutcome
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q.removeService, name)
		if err != nil {
			return fmt.Errorf("remove service %s: %w", name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			err := tx.QueryRowContext(ctx, s.q.serviceActivity, name).Scan(&out.Owner, &out.LeaseUntil, &out.StandbyUntil, &out.Now)
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			out.Found = err == nil
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q.removeServiceRetries, name); err != nil {
			return fmt.Errorf("remove service %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, s.pq.dropParts, name); err != nil {
			return fmt.Errorf("remove service %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, s.pq.membersDrop, name); err != nil {
			return fmt.Errorf("remove service %s: %w", name, err)
		}
		out.Removed, out.Found = true, true
		return nil
	})
	return out, err
}

// FirstSeqFrom finds the first event, in log order, stored at or after at.
func (s *base) FirstSeqFrom(ctx context.Context, at int64) (int64, bool, error) {
	var first sql.NullInt64
	err := s.queryRow(ctx, nil, s.q.firstSeqFrom, []any{at}, &first)
	return first.Int64, first.Valid, err
}

// errNoService rolls back a seek of an unknown service.
var errNoService = errors.New("no such service")

// Seek moves a service's offset in one transaction.
func (s *base) Seek(ctx context.Context, p store.SeekParams) (store.SeekOutcome, bool, error) {
	var out store.SeekOutcome
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		fenced, err := s.exec(ctx, tx, s.q.seekFence, p.Service)
		if err != nil {
			return err
		}
		if n, err := fenced.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errNoService
		}
		if _, err := s.exec(ctx, tx, s.pq.seekFenceParts, p.Service); err != nil {
			return err
		}
		var head int64
		if err := s.queryRow(ctx, tx, s.q.seekRead, []any{p.Service}, &out.From, &head); err != nil {
			return err
		}
		var parts sql.NullInt64 // a partitioned service is where its last partition is
		if err := s.queryRow(ctx, tx, s.pq.seekReadParts, []any{p.Service}, &parts); err != nil {
			return err
		}
		if parts.Valid {
			out.From = parts.Int64
		}
		if out.To, err = p.Target(out.From, head); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, s.q.seekMove, out.To, p.Service); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, s.pq.seekMoveParts, out.To, p.Service); err != nil {
			return err
		}
		dropped, err := s.exec(ctx, tx, s.q.seekDropRetries, p.Service, out.To)
		if err != nil {
			return err
		}
		out.RetriesDropped, err = dropped.RowsAffected()
		return err
	})
	if errors.Is(err, errNoService) {
		return out, false, nil
	}
	return out, true, err
}

// Offsets reads every service's offset and the database clock.
func (s *base) Offsets(ctx context.Context) ([]store.Offset, int64, error) {
	var out []store.Offset
	var now int64
	err := s.query(ctx, nil, s.q.lagServices, nil, func(rows *sql.Rows) error {
		var o store.Offset
		if err := rows.Scan(&o.Service, &o.Seq, &now); err != nil {
			return err
		}
		out = append(out, o)
		return nil
	})
	return out, now, err
}

// FirstCreatedAfter reads the first event after seq through the seq index.
func (s *base) FirstCreatedAfter(ctx context.Context, seq int64) (int64, bool, error) {
	var first sql.NullInt64
	err := s.queryRow(ctx, nil, s.q.firstAfter, []any{seq}, &first)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return first.Int64, first.Valid, err
}

// OldestUnsequencedCreated: the sequencer's probe finds the oldest
// unsequenced id, then its row is read by key (a query selecting more than
// the id could leave the probe's index).
func (s *base) OldestUnsequencedCreated(ctx context.Context) (int64, bool, error) {
	var id int64
	var at sql.NullInt64
	err := s.queryRow(ctx, nil, s.eng.oldestUnsequenced(), nil, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	err = s.queryRow(ctx, nil, s.q.eventCreated, []any{id}, &at)
	if errors.Is(err, sql.ErrNoRows) { // sequenced (or cleaned) meanwhile
		return 0, false, nil
	}
	return at.Int64, at.Valid, err
}
