package eventbus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

// batchPhase reads the next events after the offset, handles them and
// commits the offset with any new retry rows. It reports whether a full
// batch was finished (more may be waiting).
func (b *EventBus) batchPhase(ctx context.Context, l *lease) (bool, error) {
	qctx, cancel := b.bounded(ctx)
	defer cancel()
	all, err := b.nextBatch(qctx, l.offset)
	if err != nil {
		return false, err
	}
	if len(all) == 0 {
		return false, nil
	}
	full := len(all) == b.fetchLimit()
	recs, upTo := b.ownRecords(all)
	if full && upTo == all[len(all)-1].seq {
		// More is likely: read it while this batch runs and commits.
		b.startPrefetch(ctx, upTo)
	}
	if len(recs) == 0 {
		// Only other partitions' events (or past the switch point): move
		// the offset past them.
		if upTo <= l.offset {
			return false, nil
		}
		dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := b.commitBatch(dbCtx, l, upTo, nil, nil); err != nil {
			return false, b.dropLease(err)
		}
		return full && upTo == all[len(all)-1].seq, nil
	}
	if h := b.batchHandlerSet(); h != nil {
		return b.runBatchHandler(ctx, l, h, recs, upTo, full && upTo == all[len(all)-1].seq)
	}
	blocked, err := b.blockedFIFOSenders(qctx, recs)
	if err != nil {
		return false, err
	}
	results := b.runLeased(ctx, l, recs, nil, blocked)

	// Commit only the finished prefix: the offset must not pass an event
	// that did not finish (stopping, or lease lost).
	end := 0
	for end < len(recs) && results[end].verdict != unfinished {
		end++
	}
	if end == 0 {
		return false, nil
	}
	newOffset := upTo
	if end < len(recs) {
		newOffset = recs[end].seq - 1
	}
	dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := b.commitBatch(dbCtx, l, newOffset, recs[:end], results[:end]); err != nil {
		return false, b.dropLease(err)
	}
	return end == len(recs) && full && upTo == all[len(all)-1].seq, nil
}

// ownRecords returns the records of all that the current partition
// consumes (all of them with one partition), up to the switch point of a
// pending count change, and the offset the partition reaches once they are
// finished.
func (b *EventBus) ownRecords(all []*record) (own []*record, upTo int64) {
	limit := b.consumeCap()
	if b.cur == nil || (b.cur.count <= 1 && limit == math.MaxInt64) {
		return all, all[len(all)-1].seq
	}
	own = all[:0:0]
	for _, r := range all {
		if r.seq > limit {
			return own, limit
		}
		upTo = r.seq
		if b.owns(r.evt.Sender) {
			own = append(own, r)
		}
	}
	return own, upTo
}

func (b *EventBus) startPrefetch(ctx context.Context, after int64) {
	p := &prefetch{after: after, done: make(chan struct{})}
	b.prefetched = p
	limit := b.fetchLimit() // the current partition's, read on this goroutine
	b.bg.Go(func() {
		defer close(p.done)
		qctx, cancel := b.bounded(ctx)
		defer cancel()
		p.recs, p.err = b.fetchN(qctx, after, limit)
	})
}

// dropPrefetch waits for a read-ahead in flight and forgets it.
func (b *EventBus) dropPrefetch() {
	if p := b.prefetched; p != nil {
		<-p.done
		b.prefetched = nil
	}
}

// nextBatch returns the events after offset: the read-ahead if it read
// after that very offset, else a new read.
func (b *EventBus) nextBatch(ctx context.Context, offset int64) ([]*record, error) {
	if p := b.prefetched; p != nil {
		b.dropPrefetch()
		if p.after == offset && p.err == nil {
			return p.recs, nil
		}
	}
	return b.fetchEvents(ctx, offset)
}

// fetchLimit is how many events a batch reads: LimitPerRun, times the
// partition count for a partition (of which about LimitPerRun are its
// own), at most 10,000.
func (b *EventBus) fetchLimit() int {
	if b.cur == nil || b.cur.count <= 1 {
		return b.opts.LimitPerRun
	}
	return min(b.opts.LimitPerRun*b.cur.count, max(b.opts.LimitPerRun, 10000))
}

func (b *EventBus) fetchEvents(ctx context.Context, after int64) ([]*record, error) {
	return b.fetchN(ctx, after, b.fetchLimit())
}

func (b *EventBus) fetchN(ctx context.Context, after int64, limit int) ([]*record, error) {
	rows, err := b.st.FetchEvents(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	return records(rows), nil
}

// runLeased runs recs while a heartbeat keeps the lease; it stops starting
// records when ctx is cancelled, the lease is lost, or the lease could not be
// renewed for two thirds of its duration (checked before every record, so a
// poll whose queries stalled cannot start work on a lease about to lapse).
// ctx is checked on the goroutine that starts each call, not by a callback
// of its own: once it is cancelled, no further call starts. Handlers get a
// context that outlives ctx by ShutdownGrace (see Start), so a graceful stop
// lets them finish.
func (b *EventBus) runLeased(ctx context.Context, l *lease, recs []*record, attempts []int, blocked map[string]bool) []result {
	b.mu.Lock()
	h := b.handler
	b.mu.Unlock()
	halted := make(chan struct{})
	var once sync.Once
	halt := func() { once.Do(func() { close(halted) }) }
	done := make(chan struct{})
	var hb routines
	others := b.otherLeases()
	hb.Go(func() { b.heartbeat(context.WithoutCancel(ctx), l, others, done, halt) })
	defer hb.Wait() // it returns at once when done is closed
	defer close(done)
	proceed := func() bool {
		if ctx.Err() != nil {
			return false
		}
		select {
		case <-halted:
			return false
		default:
		}
		return b.leaseUsable(l)
	}
	parent := b.handlerParent
	if parent == nil { // not under Start (a test hook)
		parent = context.WithoutCancel(ctx)
	}
	return b.runBySender(ctx, parent, h, l.epoch, recs, attempts, blocked, proceed)
}

// dropLease forgets the lease after a failed commit: it was lost, or the
// commit's outcome is unknown. Taking it again re-reads the stored offset.
func (b *EventBus) dropLease(err error) error {
	l := b.lease
	b.lease = nil
	if errors.Is(err, store.ErrLeaseLost) {
		b.observeLease(context.Background(), LeaseLost, l)
		b.log.Warn("eventbus: lease lost before commit; the new owner redoes the batch")
		return nil
	}
	return err
}

// blockedFIFOSenders returns the senders of FIFO records in recs that have
// a FIFO event waiting in the retry store.
func (b *EventBus) blockedFIFOSenders(ctx context.Context, recs []*record) (map[string]bool, error) {
	seen := map[string]bool{}
	var senders []string
	for _, r := range recs {
		if r.evt.SendType == ddd.SendFIFO && !seen[r.evt.Sender] {
			seen[r.evt.Sender] = true
			senders = append(senders, r.evt.Sender)
		}
	}
	if len(senders) == 0 {
		return nil, nil
	}
	blockedList, err := b.st.BlockedSenders(ctx, b.service, senders) // all of them are the current partition's
	if err != nil {
		return nil, fmt.Errorf("blocked FIFO senders: %w", err)
	}
	blocked := make(map[string]bool, len(blockedList))
	for _, s := range blockedList {
		blocked[s] = true
	}
	return blocked, nil
}

// commitBatch moves the offset past recs and stores the failed, parked and
// set-aside ones in the retry store, in one fenced transaction.
func (b *EventBus) commitBatch(ctx context.Context, l *lease, newOffset int64, recs []*record, results []result) error {
	start := time.Now()
	var retries []store.NewRetry
	nDead := 0
	for i, res := range results {
		var row store.NewRetry
		switch res.verdict {
		case parked, pending:
		case failed:
			row.Attempts, row.LastError, row.DelayMilli = res.attempts, errorText(res.err), res.delay.Milliseconds()
			if !res.retry {
				row.Dead = true
				nDead++
			}
		default:
			continue
		}
		r := recs[i]
		row.Record = store.Record{PK: r.pk, Seq: r.seq, Event: r.evt}
		retries = append(retries, row)
	}
	// The update commits before the next batch starts, so a crash
	// redelivers at most the batch in flight. Without retries it is one
	// statement of its own.
	err := b.st.CommitOffset(ctx, store.CommitOffsetParams{LeaseParams: b.leaseParams(l), Offset: newOffset, Retries: retries})
	if err != nil {
		return err
	}
	l.offset = newOffset
	l.renewed(start)
	b.stats.dead.Add(int64(nDead))
	return nil
}

// runBatchHandler is batchPhase's part for a batch handler: it calls h with
// recs under the lease and commits the finished prefix (and a dead letter).
// upTo is where the offset goes once every record is finished; full that
// the batch was full (more may wait).
func (b *EventBus) runBatchHandler(ctx context.Context, l *lease, h func(context.Context, []*ddd.DomainEvent) (int, error), recs []*record, upTo int64, full bool) (bool, error) {
	if ctx.Err() != nil || !b.leaseUsable(l) {
		return false, nil
	}
	n, err := b.callBatch(ctx, l, h, recs)
	b.stats.handled.Add(int64(n))
	if err != nil {
		b.stats.failed.Add(1)
	}
	results := make([]result, n, n+1)
	for i := range results {
		results[i] = result{verdict: handled}
	}
	dead := err != nil && ddd.IsPermanent(err) && n < len(recs)
	if dead {
		res := result{verdict: failed, err: err, attempts: 1}
		b.nextAttempt(ctx, recs[n].evt, &res) // permanent: logs the dead letter, no retry
		results = append(results, res)
	}
	end := len(results)
	if end > 0 {
		newOffset := upTo
		if end < len(recs) {
			newOffset = recs[end].seq - 1
		}
		dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if cerr := b.commitBatch(dbCtx, l, newOffset, recs[:end], results); cerr != nil {
			return false, b.dropLease(cerr)
		}
	}
	switch {
	case dead:
		return true, nil
	case err != nil:
		return false, fmt.Errorf("batch handler (%d of %d events finished): %w", n, len(recs), err)
	}
	return n == len(recs) && full, nil
}
