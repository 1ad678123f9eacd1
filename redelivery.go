package eventbus

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// retryPhase runs the service's due retries (FIFO ones only at the head of
// their sender's queue) and records the outcomes in one fenced transaction,
// with the results of set-aside calls that returned. Held senders' rows are
// left alone (see holds). It reports whether more may be due at once: a
// full page, or a success that may have released the next parked FIFO event.
func (b *EventBus) retryPhase(ctx context.Context, l *lease) (bool, error) {
	plan := b.holds.plan(l.epoch)
	recs, attempts, err := b.dueRetries(ctx, plan.excluded)
	if err != nil {
		return false, err
	}
	full := len(recs) == b.opts.LimitPerRun
	if len(recs) == 0 && len(plan.record) == 0 {
		b.holds.release(plan.draining)
		return false, nil
	}
	var results []result
	if len(recs) > 0 {
		results = b.runLeased(ctx, l, recs, attempts, nil)
	}

	dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	released, nDead := false, 0
	err = b.inTx(dbCtx, func(tx *sql.Tx) error {
		if err := b.fence(dbCtx, tx, l); err != nil {
			return err
		}
		done := []any{b.service}
		record := func(pk int64, res result) error {
			switch res.verdict {
			case handled, skipped:
				done = append(done, pk)
			case failed:
				state := stateRetry
				if !res.retry {
					state = stateDead
					nDead++
				}
				if _, err := tx.ExecContext(dbCtx, b.q.updateRetry, state, res.attempts, res.delay.Milliseconds(),
					errorText(res.err), b.service, pk); err != nil {
					return fmt.Errorf("update retry: %w", err)
				}
				released = released || state == stateDead
			}
			return nil
		}
		for _, hd := range plan.record {
			res := hd.res
			if res.verdict == failed {
				res.attempts = hd.row.attempts + 1
				b.nextAttempt(ctx, hd.c.evt, &res)
			}
			if err := record(hd.row.pk, res); err != nil {
				return err
			}
		}
		for i, res := range results {
			if err := record(recs[i].pk, res); err != nil {
				return err
			}
		}
		if len(done) > 1 {
			if _, err := tx.ExecContext(dbCtx, b.q.deleteRetriesByPK(len(done)-1), done...); err != nil {
				return fmt.Errorf("delete retries: %w", err)
			}
			released = true
		}
		return nil
	})
	if err != nil {
		return false, b.dropLease(err)
	}
	b.stats.dead.Add(int64(nDead))
	b.holds.recorded(plan.record)
	if !full {
		b.holds.release(plan.draining)
	}
	return released || full || len(plan.record) > 0, nil
}

// dueRetries reads a page of due retries, leaving out the rows of the
// senders in excluded.
func (b *EventBus) dueRetries(ctx context.Context, excluded []string) ([]*record, []int, error) {
	qctx, cancel := b.bounded(ctx)
	defer cancel()
	query, args := b.q.fetchRetries, []any{b.service, b.opts.LimitPerRun}
	if len(excluded) > 0 {
		query = b.q.fetchRetriesExcept(len(excluded))
		args = make([]any, 0, len(excluded)+2)
		args = append(args, b.service)
		for _, s := range excluded {
			args = append(args, s)
		}
		args = append(args, b.opts.LimitPerRun)
	}
	var recs []*record
	var attempts []int
	err := b.query(qctx, nil, query, args, func(rows *sql.Rows) error {
		r := &record{}
		var n int
		var err error
		r.evt, err = scanEvent(rows, &r.pk, &n, &r.seq)
		recs = append(recs, r)
		attempts = append(attempts, n)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("fetch retries: %w", err)
	}
	return recs, attempts, nil
}
