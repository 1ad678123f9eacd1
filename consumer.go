package eventbus

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Start runs the service's consumer until ctx is cancelled, then waits for
// in-flight handlers, records their progress, releases the lease and returns
// nil. It also runs the TX checker and, if CleanCron is set, the cleaner.
//
// Each poll numbers newly committed events (the sequencer), takes or renews
// the service's lease, runs due retries, then reads up to LimitPerRun events
// after the service's offset and hands them to the workers. The offset only
// moves past events that are finished: handled, skipped, or moved to the
// retry store. A crash at any point loses nothing; at worst the events of
// the unfinished batch are delivered again.
//
// Errors (the database going away, say) are logged and retried with backoff;
// Start returns an error only when it cannot start.
func (b *EventBus) Start(ctx context.Context) error {
	b.mu.Lock()
	h := b.handler
	b.mu.Unlock()
	if h == nil {
		return ErrNoEventHandler
	}
	if !b.running.CompareAndSwap(false, true) {
		return ErrAlreadyStarted
	}
	defer b.running.Store(false)

	stopCleaner, err := b.startCleaner(ctx)
	if err != nil {
		return err
	}
	defer stopCleaner()
	var wg sync.WaitGroup
	wg.Go(func() { b.runTXChecker(ctx) })
	defer wg.Wait()

	b.consume(ctx)
	b.bg.Wait()
	b.dropPrefetch()
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	b.releaseLease(shutdown)
	return nil
}

func (b *EventBus) consume(ctx context.Context) {
	timer := time.NewTimer(b.opts.RunInterval)
	defer timer.Stop()
	var backoff time.Duration
	quick := false
	for {
		more, err := b.pollOnce(ctx, quick)
		if ctx.Err() != nil {
			return
		}
		wait := b.opts.RunInterval
		switch {
		case err != nil:
			backoff = nextBackoff(backoff, b.opts.RunInterval)
			wait = backoff
			b.log.Error("eventbus: poll failed; backing off", "err", err, "backoff", backoff)
		case more:
			// Go on at once. Unless a local commit asked for it, the next
			// poll skips the sequencer and the retry phase if they ran
			// less than RunInterval ago.
			backoff = 0
			quick = !b.takeWake()
			continue
		default:
			backoff = 0
		}
		quick = false
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
			if err != nil {
				<-timer.C // keep backing off while the database is away
			}
		case <-timer.C:
		}
	}
}

// nextBackoff doubles from base up to 10s, with ±20% jitter so that many
// instances do not reconnect in step.
func nextBackoff(prev, base time.Duration) time.Duration {
	next := min(max(prev*2, base), 10*time.Second)
	return time.Duration(float64(next) * (0.8 + 0.4*rand.Float64()))
}

// takeWake consumes a pending wake-up, if any.
func (b *EventBus) takeWake() bool {
	select {
	case <-b.wake:
		return true
	default:
		return false
	}
}

// pollOnce does one round of work and reports whether more is waiting. A
// quick poll (one that follows a full batch) runs the sequencer and the
// retry phase only if they last ran RunInterval ago: while a backlog
// drains, they would find nothing new at every batch.
func (b *EventBus) pollOnce(ctx context.Context, quick bool) (bool, error) {
	now := time.Now()
	if !b.seqBusy.Load() && (!quick || now.Sub(b.lastSequenced) >= b.opts.RunInterval) {
		n, more, err := b.sequence(ctx)
		b.stats.sequenced.Add(int64(n))
		if err != nil {
			return false, err
		}
		b.lastSequenced = now
		if more {
			b.sequenceInBackground(ctx)
		}
	}
	l, err := b.ensureLease(ctx)
	if err != nil || l == nil {
		return false, err
	}
	moreRetries := false
	if !quick || b.retryMore || now.Sub(b.lastRetried) >= b.opts.RunInterval {
		if moreRetries, err = b.retryPhase(ctx, l); err != nil {
			return false, err
		}
		b.lastRetried, b.retryMore = now, moreRetries
	}
	moreEvents, err := b.batchPhase(ctx, l)
	if err != nil {
		return false, err
	}
	return moreRetries || moreEvents, nil
}
