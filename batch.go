package eventbus

import (
	"context"
	"errors"
	"fmt"
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
	recs, err := b.nextBatch(qctx, l.offset)
	if err != nil {
		return false, err
	}
	if len(recs) == 0 {
		return false, nil
	}
	if len(recs) == b.opts.LimitPerRun {
		// More is likely: read it while this batch runs and commits.
		b.startPrefetch(ctx, recs[len(recs)-1].seq)
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
	dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := b.commitBatch(dbCtx, l, recs[:end], results[:end]); err != nil {
		return false, b.dropLease(err)
	}
	return end == len(recs) && len(recs) == b.opts.LimitPerRun, nil
}

// prefetch is a batch read ahead: the events after offset after.
type prefetch struct {
	after int64
	done  chan struct{}
	recs  []*record
	err   error
}

func (b *EventBus) startPrefetch(ctx context.Context, after int64) {
	p := &prefetch{after: after, done: make(chan struct{})}
	b.prefetched = p
	b.bg.Go(func() {
		defer close(p.done)
		qctx, cancel := b.bounded(ctx)
		defer cancel()
		p.recs, p.err = b.fetchEvents(qctx, after)
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

func (b *EventBus) fetchEvents(ctx context.Context, after int64) ([]*record, error) {
	rows, err := b.st.FetchEvents(ctx, after, b.opts.LimitPerRun)
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
	hb.Go(func() { b.heartbeat(context.WithoutCancel(ctx), l, done, halt) })
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
	blockedList, err := b.st.BlockedSenders(ctx, b.service, senders)
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
func (b *EventBus) commitBatch(ctx context.Context, l *lease, recs []*record, results []result) error {
	newOffset := recs[len(recs)-1].seq
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
