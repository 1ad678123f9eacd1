package eventbus

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Start runs the service's consumer until ctx is cancelled, then waits for
// in-flight handlers, records their progress, releases the lease and returns
// nil. It also runs the sequencer, the TX checker and, if CleanCron is set,
// the cleaner. Without a registered handler the instance only produces: it
// runs those duties but does not register or consume as a service.
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
	consumer := b.handler != nil
	b.mu.Unlock()
	if !consumer {
		b.log.Info("eventbus: no event handler registered; this instance only produces")
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

	b.consume(ctx, consumer)
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	b.releaseLease(shutdown)
	return nil
}

func (b *EventBus) consume(ctx context.Context, consumer bool) {
	timer := time.NewTimer(b.opts.RunInterval)
	defer timer.Stop()
	var backoff time.Duration
	woken := false
	for {
		more, err := b.pollOnce(ctx, consumer, woken)
		if ctx.Err() != nil {
			return
		}
		woken = false
		wait := b.opts.RunInterval
		switch {
		case err != nil:
			backoff = nextBackoff(backoff, b.opts.RunInterval)
			wait = backoff
			b.log.Error("eventbus: poll failed; backing off", "err", err, "backoff", backoff)
		case more:
			backoff = 0
			continue
		default:
			backoff = 0
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
			if err != nil {
				<-timer.C // keep backing off while the database is away
			} else {
				woken = true
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

// pollOnce does one round of work and reports whether more is waiting.
// woken means a local commit just stored events: the sequencer skips its
// idle probe, and due retries (checked at least every RunInterval) wait for
// a regular poll, so the wake-up path is as short as it can be.
func (b *EventBus) pollOnce(ctx context.Context, consumer, woken bool) (bool, error) {
	n, err := b.sequence(ctx, !woken)
	b.stats.sequenced.Add(int64(n))
	if err != nil || !consumer {
		return false, err
	}
	if !b.registered {
		if err := b.registerService(ctx); err != nil {
			return false, err
		}
		b.registered = true
	}
	l, err := b.ensureLease(ctx)
	if err != nil || l == nil {
		return false, err
	}
	moreRetries := false
	if !woken || time.Since(b.retriesCheckedAt) >= b.opts.RunInterval {
		b.retriesCheckedAt = time.Now()
		if moreRetries, err = b.retryPhase(ctx, l); err != nil {
			return false, err
		}
	}
	moreEvents, err := b.batchPhase(ctx, l)
	if err != nil {
		return false, err
	}
	return moreRetries || moreEvents, nil
}
