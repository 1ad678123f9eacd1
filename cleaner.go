package eventbus

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/robfig/cron/v3"
)

// cleanBatch bounds each DELETE, so the cleaner never holds long locks on
// the log while producers write.
const cleanBatch = 500

// CleanReport says what one cleaning run deleted.
type CleanReport struct {
	Events       int64
	DeadLetters  int64
	Transactions int64
}

// startCleaner schedules Clean on CleanCron; the returned func stops it and
// waits for a running clean to finish.
func (b *EventBus) startCleaner(ctx context.Context) (func(), error) {
	if b.opts.CleanCron == "" {
		return func() {}, nil
	}
	c := cron.New(cron.WithParser(cronParser))
	_, err := c.AddFunc(b.opts.CleanCron, func() {
		if r, err := b.Clean(ctx); err != nil && ctx.Err() == nil {
			b.log.Error("eventbus: clean failed", "err", err)
		} else if err == nil {
			b.log.Info("eventbus: cleaned", "events", r.Events, "dead_letters", r.DeadLetters, "transactions", r.Transactions)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: CleanCron: %v", ErrInvalidOption, err)
	}
	c.Start()
	return func() { <-c.Stop().Done() }, nil
}

// Clean deletes, in batches of cleanBatch:
//   - dead letters older than DeadLetterRetention, if that is set (first,
//     so that their events can go in the same run);
//   - events older than RetentionTime that every registered service has
//     consumed and none holds as a retry or dead letter (pending
//     transactions' events are not in the log yet);
//   - resolved transactions older than RetentionTime.
//
// It is safe to run on several instances at once. With no service
// registered it deletes no events. Sequence numbers come from the
// sequencer's counter, never from the emptied table, so no offset can be
// reused. A removed service (RemoveService) no longer holds events back.
func (b *EventBus) Clean(ctx context.Context) (CleanReport, error) {
	var rep CleanReport
	retention := b.opts.RetentionTime.Milliseconds()
	if b.opts.DeadLetterRetention > 0 {
		n, err := b.cleanDeadLetters(ctx, b.opts.DeadLetterRetention.Milliseconds())
		rep.DeadLetters = n
		if err != nil {
			return rep, fmt.Errorf("clean dead letters: %w", err)
		}
	}
	var services, minSeq int64
	if err := b.sqlDB.QueryRowContext(ctx, b.q.minConsumed).Scan(&services, &minSeq); err != nil {
		return rep, fmt.Errorf("clean: consumed positions: %w", err)
	}
	if services > 0 {
		n, err := b.deleteInBatches(ctx, b.q.cleanCandidates, []any{minSeq, retention}, b.q.deleteEventsByID, nil)
		rep.Events = n
		if err != nil {
			return rep, fmt.Errorf("clean events: %w", err)
		}
	}
	n, err := b.cleanTransactions(ctx, retention)
	rep.Transactions = n
	if err != nil {
		return rep, fmt.Errorf("clean transactions: %w", err)
	}
	return rep, nil
}

// cleanTransactions deletes resolved transactions older than retention ms,
// in batches, and raises the highest removed id (the cleaner's mark) in the
// same database transaction as each delete: a later Commit or Rollback of
// an id it cannot find then knows the transaction may have existed, and
// answers ErrTxCleaned rather than claim it never did.
func (b *EventBus) cleanTransactions(ctx context.Context, retention int64) (int64, error) {
	var total int64
	for {
		ids, err := queryInt64s(ctx, b.sqlDB, b.q.oldResolvedTxs, retention, cleanBatch)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		highest := ids[len(ids)-1] // picked in id order
		var n int64
		err = b.inTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, b.q.deleteTxsByID(len(ids)), args...)
			if err != nil {
				return err
			}
			if n, err = res.RowsAffected(); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, b.q.raiseTxWatermark, highest, highest)
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

// cleanDeadLetters deletes dead letters older than age ms, service by service.
func (b *EventBus) cleanDeadLetters(ctx context.Context, age int64) (int64, error) {
	services, err := queryStrings(ctx, b.sqlDB, b.q.oldDeadServices, age)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, s := range services {
		n, err := b.deleteInBatches(ctx, b.q.oldDeadLetters, []any{s, age}, b.q.deleteDeadByPK, []any{s, age})
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// deleteInBatches selects up to cleanBatch ids with pick(pickArgs...,
// limit) and deletes them with del(delArgs..., ids...), until a page comes
// back short.
func (b *EventBus) deleteInBatches(ctx context.Context, pick string, pickArgs []any, del func(n int) string, delArgs []any) (int64, error) {
	var total int64
	for {
		ids, err := queryInt64s(ctx, b.sqlDB, pick, append(pickArgs, cleanBatch)...)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		args := append([]any(nil), delArgs...)
		for _, id := range ids {
			args = append(args, id)
		}
		var n int64
		err = b.inTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, del(len(ids)), args...)
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
