package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// cleanBatch bounds each DELETE, so the cleaner never holds long locks on
// the log while producers write.
const cleanBatch = 500

// CleanEvents deletes the events older than retention ms that every
// registered service has consumed and no retry or dead letter references.
//
// It reads services and retries with plain reads only, never locking
// reads: consumers lock their service's row to commit offsets and renew
// leases, and write retry rows, and must not wait for a clean (on MySQL a
// subquery of a DELETE would lock every row it reads). Each batch's DELETE
// locks only the event rows it deletes, and re-checks the position it was
// read with. Then, in the same transaction, a plain read checks services
// and retries again, and the batch rolls back if a service now stands
// lower (one registered meanwhile at an earlier start position) or a retry
// row references one of its events. For the services that existed when
// the position was read no retry row can appear: one is only ever written
// for an event above its service's stored offset, in the transaction that
// moves that offset forward.
func (s *base) CleanEvents(ctx context.Context, retention int64) (int64, error) {
	var total int64
	for {
		var services, consumed int64
		if err := s.queryRow(ctx, nil, s.q.minConsumed, nil, &services, &consumed); err != nil {
			return total, fmt.Errorf("consumed positions: %w", err)
		}
		if services == 0 {
			return total, nil
		}
		ids, err := queryAll[int64](ctx, s, nil, s.q.cleanCandidates, consumed, retention, cleanBatch)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		n, err := s.deleteEvents(ctx, ids, consumed)
		total += n
		// A short page is the last; a batch that deleted nothing (another
		// instance cleaned it, or the re-check refused it) ends this run.
		if err != nil || len(ids) < cleanBatch || n == 0 {
			return total, err
		}
	}
}

// errCleanRaced rolls back a cleaning batch whose re-check failed.
var errCleanRaced = errors.New("a service or a retry appeared during the clean")

// deleteEvents deletes ids at or below position consumed; see CleanEvents.
func (s *base) deleteEvents(ctx context.Context, ids []int64, consumed int64) (int64, error) {
	args := make([]any, 0, len(ids)+1)
	args = append(args, consumed)
	for _, id := range ids {
		args = append(args, id)
	}
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, s.q.deleteEventsByID(len(ids)), args...)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		var services, lowest, retried int64
		if err := s.queryRow(ctx, tx, s.q.cleanRecheck(len(ids)), args[1:], &services, &lowest, &retried); err != nil {
			return fmt.Errorf("re-check: %w", err)
		}
		if services == 0 || lowest < consumed || retried > 0 {
			return errCleanRaced
		}
		return nil
	})
	if errors.Is(err, errCleanRaced) {
		return 0, nil
	}
	return n, err
}

// CleanTxs deletes resolved transactions older than retention ms,
// in batches, and raises the highest removed id (the cleaner's mark) in the
// same database transaction as each delete: a later Commit or Rollback of
// an id it cannot find then knows the transaction may have existed, and
// answers ErrTxCleaned rather than claim it never did.
func (s *base) CleanTxs(ctx context.Context, retention int64) (int64, error) {
	var total int64
	for {
		ids, err := queryAll[int64](ctx, s, nil, s.q.oldResolvedTxs, retention, cleanBatch)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		highest := ids[len(ids)-1] // picked in id order
		var n int64
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			res, err := s.exec(ctx, tx, s.q.deleteTxsByID(len(ids)), args...)
			if err != nil {
				return err
			}
			if n, err = res.RowsAffected(); err != nil {
				return err
			}
			_, err = s.exec(ctx, tx, s.q.raiseTxWatermark, highest, highest)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if len(ids) < cleanBatch {
			return total, nil
		}
	}
}

// CleanDeadLetters deletes dead letters older than age ms, service by service.
func (s *base) CleanDeadLetters(ctx context.Context, age int64) (int64, error) {
	services, err := queryAll[string](ctx, s, nil, s.q.oldDeadServices, age)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, svc := range services {
		n, err := s.deleteInBatches(ctx, s.q.oldDeadLetters, []any{svc, age}, s.q.deleteDeadByPK, []any{svc, age})
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// deleteInBatches selects up to cleanBatch ids with pick(pickArgs...,
// limit) and deletes them with del(delArgs..., ids...), until a page comes
// back short. The DELETEs read no other table.
func (s *base) deleteInBatches(ctx context.Context, pick string, pickArgs []any, del func(n int) string, delArgs []any) (int64, error) {
	var total int64
	for {
		ids, err := queryAll[int64](ctx, s, nil, pick, append(pickArgs, cleanBatch)...)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		args := append([]any(nil), delArgs...)
		for _, id := range ids {
			args = append(args, id)
		}
		var n int64
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			res, err := s.exec(ctx, tx, del(len(ids)), args...)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		total += n
		// A short page is the last; a page the delete's re-check refused
		// entirely would come back unchanged.
		if err != nil || len(ids) < cleanBatch || n == 0 {
			return total, err
		}
	}
}
