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
//
// Each batch numbers, in id order, the lowest unnumbered ids visible once
// the lock is held, never a window further on: a transaction that commits
// late (a straggler) must be numbered before the rows of any transaction
// that started after it committed, or one sender's events would be
// delivered out of order. Finding that lowest id must not cost more as the
// backlog grows: PostgreSQL reads it from a partial index of unnumbered
// rows, MySQL from the NULL entries of events_seq (seq, id), SQLite from
// rowids (see the dialects' unnumbered). PostgreSQL then picks within a
// window of sequenceSpan ids above it, so that its planner, misled by
// statistics of an empty or fully numbered table, cannot sort the whole
// backlog for each batch, and it numbers the picked ids through the
// primary key (an array), never by a join the planner could turn into a
// rescan per unnumbered row (TestSequencerWorkFollowsTheBatch).
//
// On PostgreSQL the batch is a function (migration 0004), one round trip:
// it locks the sequencer row and reads last_seq, then picks, numbers and
// saves in statements that each take a new snapshot, after the lock is
// held, so they see every earlier batch. The batch commits asynchronously
// (synchronous_commit off): its commit record precedes in the WAL every
// transaction that saw its numbers, and each of those that moves an offset
// commits synchronously, flushing it too. A crash can thus only lose
// numbers nobody has acknowledged; the rows are numbered again, above the
// restored last_seq, and redelivered under their unchanged event IDs.

const (
	sequenceBatch = 5000
	sequenceSpan  = 4 * sequenceBatch // PostgreSQL's pick window, in ids
)

// hasUnnumbered reports whether committed events wait for a number; the
// poll then runs sequenceBatch, and hands what a batch leaves to
// sequenceInBackground. Any instance of any service may number; the lock
// makes concurrent batches take turns.
func (b *EventBus) hasUnnumbered(ctx context.Context) (bool, error) {
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	var probe int64
	err := b.queryRow(ctx, nil, b.q.hasUnsequenced, nil, &probe)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sequencer: probe: %w", err)
	}
	return true, nil
}

// sequenceInBackground numbers a backlog batch after batch on a goroutine
// of its own, waking the consumer after each, so that consuming the first
// batches overlaps numbering the next ones (they use two connections). It
// returns at once; Start waits for it before returning.
func (b *EventBus) sequenceInBackground(ctx context.Context) {
	if !b.seqBusy.CompareAndSwap(false, true) {
		return
	}
	b.bg.Go(func() {
		defer func() {
			b.seqBusy.Store(false)
			b.Notify() // rows committed during the last batch: the next poll numbers them
		}()
		for ctx.Err() == nil {
			bctx, cancel := b.bounded(ctx)
			n, more, err := b.sequenceObserved(bctx)
			cancel()
			b.stats.sequenced.Add(int64(n))
			if n > 0 {
				b.Notify()
			}
			if err != nil {
				if ctx.Err() == nil {
					b.log.Warn("eventbus: background sequencing", "err", err)
				}
				return
			}
			if !more {
				return
			}
		}
	})
}

// sequenceBatch numbers up to sequenceBatch committed, unsequenced events
// and reports whether more may be waiting.
func (b *EventBus) sequenceBatch(ctx context.Context) (n int, more bool, err error) {
	if b.q.sequenceCall != "" {
		var beyond bool
		if err := b.queryRow(ctx, nil, b.q.sequenceCall, []any{sequenceBatch, sequenceSpan}, &n, &beyond); err != nil {
			return 0, false, fmt.Errorf("sequencer: %w", err)
		}
		return n, n == sequenceBatch || beyond, nil
	}
	err = b.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = b.sequenceBatchGeneric(ctx, tx)
		more = n == sequenceBatch
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("sequencer: %w", err)
	}
	return n, more, nil
}

// sequenceBatchGeneric is sequenceBatch statement by statement (MySQL, SQLite).
func (b *EventBus) sequenceBatchGeneric(ctx context.Context, tx *sql.Tx) (int, error) {
	var last int64
	if b.q.lockReadLastSeq != "" {
		if err := tx.QueryRowContext(ctx, b.q.lockReadLastSeq).Scan(&last); err != nil {
			return 0, fmt.Errorf("lock: %w", err)
		}
	} else {
		if _, err := tx.ExecContext(ctx, b.q.lockSequencer); err != nil {
			return 0, fmt.Errorf("lock: %w", err)
		}
		if err := tx.QueryRowContext(ctx, b.q.readLastSeq).Scan(&last); err != nil {
			return 0, fmt.Errorf("read last seq: %w", err)
		}
	}
	ids, err := queryAll[int64](ctx, b, tx, b.q.pickUnsequenced)
	if err != nil {
		return 0, fmt.Errorf("pick: %w", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	// ids are ascending, so seq = id + delta ascends from last+1.
	delta := last + 1 - ids[0]
	res, err := tx.ExecContext(ctx, b.q.assignSeq(delta, ids))
	if err != nil {
		return 0, fmt.Errorf("assign: %w", err)
	}
	if got, err := res.RowsAffected(); err == nil && got != int64(len(ids)) {
		return 0, fmt.Errorf("assign: numbered %d of %d events", got, len(ids))
	}
	if _, err := tx.ExecContext(ctx, b.q.saveLastSeq(ids[len(ids)-1]+delta)); err != nil {
		return 0, fmt.Errorf("save last seq: %w", err)
	}
	return len(ids), nil
}
