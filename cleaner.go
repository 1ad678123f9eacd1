package eventbus

import (
	"context"
	"database/sql"
	"errors"
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
// It never waits for, nor holds up, consumers' offset commits, lease
// renewals or retries: it locks only the rows it deletes (see cleanEvents).
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
	n, err := b.cleanEvents(ctx, retention)
	rep.Events = n
	if err != nil {
		return rep, fmt.Errorf("clean events: %w", err)
	}
	n, err = b.cleanTransactions(ctx, retention)
	rep.Transactions = n
	if err != nil {
		return rep, fmt.Errorf("clean transactions: %w", err)
	}
	return rep, nil
}

// cleanEvents deletes the events older than retention ms that every
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
func (b *EventBus) cleanEvents(ctx context.Context, retention int64) (int64, error) {
	var total int64
	for {
		var services, consumed int64
		if err := b.queryRow(ctx, nil, b.q.minConsumed, nil, &services, &consumed); err != nil {
			return total, fmt.Errorf("consumed positions: %w", err)
		}
		if services == 0 {
			return total, nil
		}
		ids, err := queryAll[int64](ctx, b, nil, b.q.cleanCandidates, consumed, retention, cleanBatch)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		n, err := b.deleteEvents(ctx, ids, consumed)
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

// deleteEvents deletes ids at or below position consumed; see cleanEvents.
func (b *EventBus) deleteEvents(ctx context.Context, ids []int64, consumed int64) (int64, error) {
	args := make([]any, 0, len(ids)+1)
	args = append(args, consumed)
	for _, id := range ids {
		args = append(args, id)
	}
	var n int64
	err := b.inTx(ctx, func(tx *sql.Tx) error {
		res, err := b.exec(ctx, tx, b.q.deleteEventsByID(len(ids)), args...)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		var services, lowest, retried int64
		if err := b.queryRow(ctx, tx, b.q.cleanRecheck(len(ids)), args[1:], &services, &lowest, &retried); err != nil {
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

// cleanTransactions deletes resolved transactions older than retention ms,
// in batches, and raises the highest removed id (the cleaner's mark) in the
// same database transaction as each delete: a later Commit or Rollback of
// an id it cannot find then knows the transaction may have existed, and
// answers ErrTxCleaned rather than claim it never did.
func (b *EventBus) cleanTransactions(ctx context.Context, retention int64) (int64, error) {
	var total int64
	for {
		ids, err := queryAll[int64](ctx, b, nil, b.q.oldResolvedTxs, retention, cleanBatch)
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
			res, err := b.exec(ctx, tx, b.q.deleteTxsByID(len(ids)), args...)
			if err != nil {
				return err
			}
			if n, err = res.RowsAffected(); err != nil {
				return err
			}
			_, err = b.exec(ctx, tx, b.q.raiseTxWatermark, highest, highest)
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
	services, err := queryAll[string](ctx, b, nil, b.q.oldDeadServices, age)
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
// back short. The DELETEs read no other table.
func (b *EventBus) deleteInBatches(ctx context.Context, pick string, pickArgs []any, del func(n int) string, delArgs []any) (int64, error) {
	var total int64
	for {
		ids, err := queryAll[int64](ctx, b, nil, pick, append(pickArgs, cleanBatch)...)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		args := append([]any(nil), delArgs...)
		for _, id := range ids {
			args = append(args, id)
		}
		var n int64
		err = b.inTx(ctx, func(tx *sql.Tx) error {
			res, err := b.exec(ctx, tx, del(len(ids)), args...)
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
