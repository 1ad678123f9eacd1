package eventbus

import (
	"context"
	"time"

	"github.com/dddbus/eventbus/internal/store"
)

// Why a sequencer: on MySQL and PostgreSQL an auto-increment id is taken at
// INSERT but becomes visible at COMMIT, so ids appear out of order. A poller
// that moved its offset past id 11 would never see id 10 committing later.
// The sequencer gives committed rows a second number, seq, under one lock:
// every batch reads only committed rows, after it holds the lock, and
// sequences them above everything sequenced before; the lock makes batches
// commit one after another, so seq values become visible in increasing
// order. Consumers read by seq and can never skip one.
//
// It does not wait for open transactions: rows they inserted are invisible,
// so they are simply sequenced after they commit. A rolled-back row is never
// seen at all, and a transaction that wrote no event is not involved. A
// batch sequences, in id order, the committed rows it can see, so a
// transaction that commits late (a straggler) is sequenced before the rows
// of any transaction that began after it committed: one sender's events
// keep their order.
//
// One server-side step. On PostgreSQL and MySQL a batch is a stored
// procedure (migration 0007), called in autocommit: it reads whether
// anything waits without taking a lock and, only if so, runs at a stated
// READ COMMITTED (at REPEATABLE READ or SERIALIZABLE its snapshot could
// predate the lock, and concurrent instances would fail with serialization
// errors) and commits inside the server before the call returns. No client
// holds the lock between round trips, so a process frozen at any moment
// (SIGSTOP, a VM pause, a debugger) cannot stop sequencing for the others.
// On SQLite the batch is one UPDATE (a trigger keeps last_seq), which holds
// the write lock only while SQLite executes it.
//
// Runs (PostgreSQL, MySQL). Sequencing a row leaves an entry of its old,
// unsequenced version in the index of unsequenced rows until vacuum or purge
// can remove it, which no open snapshot older than it allows: walking that
// index from its start would cost more with every row sequenced behind a
// long report or a mysqldump. The sequencer therefore keeps the ranges of
// ids that may still hold a row to sequence: the open run above every id
// sequenced, and the holes batches left behind (ids with no committed row
// when a batch passed them). A poll or a batch looks in those ranges only,
// at the cost of an index probe per range. A hole goes when its rows are
// sequenced or when no row can come to it any more (tidy); one older than
// holeExpire is given up, and a row that still comes to it is found by the
// sweep (sweepEvery), which walks the whole index: such a straggler is
// delayed by up to sweepEvery, and may then come after events committed
// meanwhile. See docs/production.md.
//
// On PostgreSQL the batch commits asynchronously (synchronous_commit off):
// its commit record precedes in the WAL every transaction that saw its
// numbers, and each of those that moves an offset commits synchronously,
// flushing it too. A crash can thus only lose numbers nobody has
// acknowledged; the rows are sequenced again, above the restored last_seq,
// and redelivered under their unchanged event IDs.

// The batch of a step (5000 events) and the window of a run are the
// store's (internal/store/sqlstore/sequencer.go).
const (
	// Upkeep of the runs (PostgreSQL, MySQL); see sequence_tidy in
	// migration 0007. A settled hole is given up holeSettle after it
	// appeared: the margin for an id taken by an INSERT whose row is not
	// written yet (longer than innodb_lock_wait_timeout's default of 50s,
	// which such an INSERT may wait). An open one is given up after
	// holeExpire. The sweep runs once per sweepEvery across instances.
	tidyEvery  = 10 * time.Second
	holeSettle = time.Minute
	holeExpire = 10 * time.Minute
	sweepEvery = time.Minute
)

// sequenceStep runs one sequencer step: it sequences up to a batch of
// committed, unsequenced events, if any, and reports how many and whether
// more wait. Any instance of any service may run it; the lock makes
// concurrent steps take turns.
func (b *EventBus) sequenceStep(ctx context.Context) (n int, more bool, err error) {
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	return b.st.Sequence(ctx)
}

// sequence runs one sequencer step and hands what it leaves to the
// background. It reports how many events it sequenced.
func (b *EventBus) sequence(ctx context.Context) (int, error) {
	n, more, err := b.sequenceObserved(ctx)
	b.stats.sequenced.Add(int64(n))
	if err != nil {
		return 0, err
	}
	if more {
		b.sequenceInBackground(ctx)
	}
	return n, nil
}

// sequenceInBackground sequences a backlog step after step on a goroutine of
// its own, waking the consumer after each, so that consuming the first
// batches overlaps sequencing the next ones (they use two connections). It
// returns at once; Start waits for it before returning.
func (b *EventBus) sequenceInBackground(ctx context.Context) {
	if !b.sequenceBusy.CompareAndSwap(false, true) {
		return
	}
	b.bg.Go(func() {
		defer func() {
			b.sequenceBusy.Store(false)
			b.Notify() // rows committed during the last batch: the next poll sequences them
		}()
		for ctx.Err() == nil {
			n, more, err := b.sequenceObserved(ctx)
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

// tidyRuns gives up holes that can no longer receive a row, or that are
// too old, and sweeps for rows no run holds (PostgreSQL, MySQL; see
// sequence_tidy). A negative sweep skips the sweep. It reports whether it
// changed the runs.
func (b *EventBus) tidyRuns(ctx context.Context, settle, expire, sweep time.Duration) (bool, error) {
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	secs := int64(sweep / time.Second)
	if sweep < 0 {
		secs = -1
	}
	return b.st.TidyRuns(ctx, store.TidyParams{Settle: int64(settle / time.Second), Expire: int64(expire / time.Second), Sweep: secs})
}

// sequenceObserved runs one sequencer batch and reports it.
func (b *EventBus) sequenceObserved(ctx context.Context) (int, bool, error) {
	obs := b.opts.Observer
	if obs == nil {
		return b.sequenceStep(ctx)
	}
	start := time.Now()
	n, more, err := b.sequenceStep(ctx)
	if n > 0 || err != nil {
		func() {
			defer b.observerPanicked("SequencerBatch")
			obs.SequencerBatch(ctx, SequencerBatch{Service: b.service, Events: n, Duration: time.Since(start), Err: err})
		}()
	}
	return n, more, err
}
