package eventbus

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// retryPhase runs the service's due retries (FIFO ones only at the head of
// their sender's queue) and records the outcomes in one fenced transaction.
// It reports whether more may be due at once: a full page, or a success that
// may have released the next parked FIFO event.
func (b *EventBus) retryPhase(ctx context.Context, l *lease) (bool, error) {
	qctx, cancel := b.bounded(ctx)
	defer cancel()
	var recs []*record
	var attempts []int
	err := b.query(qctx, nil, b.q.fetchRetries, []any{b.service, b.opts.LimitPerRun}, func(rows *sql.Rows) error {
		r := &record{}
		var n int
		var err error
		r.evt, err = scanEvent(rows, &r.pk, &n, &r.seq)
		recs = append(recs, r)
		attempts = append(attempts, n)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("fetch retries: %w", err)
	}
	if len(recs) == 0 {
		return false, nil
	}
	results := b.runLeased(ctx, l, recs, attempts, nil)

	dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	released, nDead := false, 0
	err = b.inTx(dbCtx, func(tx *sql.Tx) error {
		if err := b.fence(dbCtx, tx, l); err != nil {
			return err
		}
		done := []any{b.service}
		for i, res := range results {
			switch res.verdict {
			case handled, skipped:
				done = append(done, recs[i].pk)
			case failed:
				state := stateRetry
				if !res.retry {
					state = stateDead
					nDead++
				}
				if _, err := tx.ExecContext(dbCtx, b.q.updateRetry, state, res.attempts, res.delay.Milliseconds(),
					errorText(res.err), b.service, recs[i].pk); err != nil {
					return fmt.Errorf("update retry: %w", err)
				}
				released = released || state == stateDead
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
	return released || len(recs) == b.opts.LimitPerRun, nil
}
