package eventbus

import (
	"context"
	"database/sql"
	"fmt"
)

// Why a sequencer: on MySQL and PostgreSQL an auto-increment id is taken at
// INSERT but becomes visible at COMMIT, so ids appear out of order. A poller
// that moved its offset past id 11 would never see id 10 committing later.
// The sequencer gives committed rows a second number, seq, under one lock:
// every sequencing transaction reads only committed rows and numbers them
// above everything numbered before, and the lock makes those transactions
// commit one after another, so seq values become visible in increasing
// order. Consumers read by seq and can never skip one.
//
// It does not wait for open transactions: rows they inserted are invisible,
// so they are simply numbered after they commit. A rolled-back row is never
// seen at all, and a transaction that wrote no event is not involved.

const sequenceBatch = 1000

// sequence numbers every committed, unsequenced event, in batches. Any
// instance of any service may run it; the lock makes concurrent runs take
// turns. With probe it first checks, without locking, whether anything is
// waiting (the idle case); a caller that knows events were just committed
// skips that. It returns the number of events it numbered.
func (b *EventBus) sequence(ctx context.Context, probe bool) (int, error) {
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	total := 0
	for {
		if probe {
			var id int64
			err := b.sqlDB.QueryRowContext(ctx, b.q.hasUnsequenced).Scan(&id)
			if err == sql.ErrNoRows {
				return total, nil
			}
			if err != nil {
				return total, fmt.Errorf("sequencer: probe: %w", err)
			}
		}
		n, err := b.sequenceBatch(ctx)
		total += n
		if err != nil || n < sequenceBatch {
			return total, err
		}
		probe = true
	}
}

func (b *EventBus) sequenceBatch(ctx context.Context) (int, error) {
	n := 0
	err := b.inTxWith(ctx, b.d.sequencerTxOptions(), func(tx *sql.Tx) error {
		var last int64
		if err := tx.QueryRowContext(ctx, b.q.lockSequencer).Scan(&last); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if b.q.numberBatch != "" {
			var newLast int64
			if err := tx.QueryRowContext(ctx, b.q.numberBatch, last, sequenceBatch).Scan(&newLast, &n); err != nil {
				return fmt.Errorf("number: %w", err)
			}
			return nil
		}
		ids, err := queryInt64s(ctx, tx, b.q.pickUnsequenced, sequenceBatch)
		if err != nil {
			return fmt.Errorf("pick: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		// ids are ascending, so seq = id + delta ascends from last+1.
		delta := last + 1 - ids[0]
		args := make([]any, 0, len(ids)+1)
		args = append(args, delta)
		for _, id := range ids {
			args = append(args, id)
		}
		res, err := tx.ExecContext(ctx, b.q.assignSeq(len(ids)), args...)
		if err != nil {
			return fmt.Errorf("assign: %w", err)
		}
		if got, err := res.RowsAffected(); err == nil && got != int64(len(ids)) {
			return fmt.Errorf("assign: numbered %d of %d events", got, len(ids))
		}
		if _, err := tx.ExecContext(ctx, b.q.saveLastSeq, ids[len(ids)-1]+delta); err != nil {
			return fmt.Errorf("save last seq: %w", err)
		}
		n = len(ids)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sequencer: %w", err)
	}
	return n, nil
}
