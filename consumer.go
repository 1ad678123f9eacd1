package eventbus

import (
	"context"
	"time"
)

// Start runs the service's consumer until ctx is cancelled, and returns nil
// then; it returns an error only when it cannot start. It also runs the
// sequencer, the TX checker and, if CleanCron is set, the cleaner. Without
// a registered handler the instance only produces: it runs those duties
// but does not register or consume as a service.
//
// Each poll takes or renews the service's lease, sequences newly committed
// events (the sequencer), reads up to LimitPerRun events after the
// service's offset and hands them to the workers, then runs due retries.
// Polls come every RunInterval, at once while full batches come, and when
// a commit wakes the bus (Notify in this process; other processes
// through LISTEN/NOTIFY or the change probe, see wakeup.go). The offset only moves past events
// that are finished: handled, skipped, or moved to the retry store, and it
// is committed before the next batch starts (while the next batch is read
// ahead). A crash at any point loses nothing; at worst the events of the
// batch in flight are delivered again.
//
// Stopping: once ctx is cancelled no handler call starts. Calls in flight
// get ShutdownGrace to finish (their contexts stay live until then); those
// still running after it have their contexts cancelled and their events
// left to the next owner, and Start no longer waits for them. Start then
// records what finished, releases the lease (another instance takes over
// at its next poll) and returns. Calls abandoned earlier (past
// HandlerTimeout) are not waited for either: one may still be running
// when Start returns (Stats.Unreturned counts them). Apart from those, and
// from Tx checker calls past TxCheckCallTimeout, every goroutine the bus
// started has ended when Start returns (see routines).
//
// Errors (the database going away, say) are logged and retried with backoff.
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
	defer b.joinWakeHub()() // after every other goroutine of this Start: see routines

	stopCleaner, err := b.startCleaner(ctx)
	if err != nil {
		return err
	}
	defer stopCleaner()
	b.bg.Go(func() { b.runTXChecker(ctx) })
	b.viewAt, b.switchAsked = time.Time{}, false

	parent, endGrace := b.stopGrace(ctx)
	defer endGrace()
	b.handlerParent = parent
	b.consume(ctx, consumer)
	b.bg.Wait() // the Tx checker, the sequencer, a read-ahead, lease renewals
	b.dropPrefetch()
	b.handlerParent = nil
	if n := len(b.holds.running()); n > 0 {
		b.log.Warn("eventbus: stopping with handler calls still running; the next owner may deliver their senders' events while they run", "calls", n)
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	b.releaseLease(shutdown)
	return nil
}

// stopGrace returns the parent context of handler calls: it carries ctx's
// values and is cancelled ShutdownGrace after ctx is, which is when the
// bus stops waiting for calls in flight. end releases it, and returns only
// once the callback that arms the grace timer, if it started, has ended.
func (b *EventBus) stopGrace(ctx context.Context) (parent context.Context, end func()) {
	parent, cancel := context.WithCancel(context.WithoutCancel(ctx))
	armed := make(chan *time.Timer, 1)
	stop := context.AfterFunc(ctx, func() { armed <- time.AfterFunc(b.opts.ShutdownGrace, cancel) })
	return parent, func() {
		if !stop() { // the callback runs once: wait for its timer and stop it
			(<-armed).Stop()
		}
		cancel()
	}
}

// consume polls every RunInterval (counted from the start of the previous
// poll), at once while full batches come, and when woken.
func (b *EventBus) consume(ctx context.Context, consumer bool) {
	timer := time.NewTimer(b.opts.RunInterval)
	defer timer.Stop()
	var backoff time.Duration
	kind := pollTimer
	for {
		began := time.Now()
		more, err := b.pollOnce(ctx, kind, consumer)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		switch {
		case err != nil:
			backoff = nextBackoff(backoff, b.opts.RunInterval)
			wait = backoff
			b.log.Error("eventbus: poll failed; backing off", "err", err, "backoff", backoff)
		case more:
			// Go on at once. Unless a wake-up came meanwhile, the next
			// poll skips the sequencer and the retry phase if they ran
			// less than RunInterval ago.
			backoff = 0
			kind = pollQuick
			if b.takeWake() {
				kind = pollWoken
			}
			continue
		default:
			backoff = 0
			if wait = b.opts.RunInterval - time.Since(began); wait <= 0 {
				kind = pollTimer
				continue
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
			kind = pollWoken
			if err != nil {
				<-timer.C // keep backing off while the database is away
				kind = pollTimer
			}
		case <-timer.C:
			kind = pollTimer
		}
	}
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

// pollOnce does one round of work and reports whether more is waiting.
//
// A timer poll reads the events sequenced already while the sequencer runs
// (on another connection), so that an event sequenced by another instance
// is handled one round trip after the poll starts; the sequencer's step
// only reads when nothing waits, and what it sequences comes after that
// read-ahead in the log, so the poll then asks for another at once. Due
// retries run after the new events. A woken poll (something was committed
// here) and a quick one (it follows a full batch) run the retry phase only
// if it last ran RunInterval ago; a quick poll does the same with the
// sequencer: while a backlog drains, both would find nothing new at every
// batch.
func (b *EventBus) pollOnce(ctx context.Context, kind pollKind, consumer bool) (bool, error) {
	now := time.Now()
	quick := kind == pollQuick
	var l *lease
	if consumer && b.removed.Load() {
		b.logRemoved()
		consumer = false
	}
	if consumer {
		if !b.registered.Load() {
			if err := b.registerService(ctx); err != nil {
				return false, err
			}
			b.registered.Store(true)
		}
		if b.viewDue(kind) {
			if err := b.refreshView(ctx); err != nil {
				return false, err
			}
			if b.removed.Load() {
				return false, nil
			}
		}
		if b.partitioned() {
			return b.pollParts(ctx, kind)
		}
		b.adoptService(false)
		var err error
		if l, err = b.ensureLease(ctx); err != nil {
			return false, err
		}
		if l == nil {
			if err := b.standBy(ctx); err != nil {
				return false, err
			}
		}
	}
	if l != nil && kind == pollTimer && b.prefetched == nil {
		b.startPrefetch(ctx, l.offset)
	}
	readAhead := b.prefetched != nil
	sequenced := false // this poll sequenced events
	if !b.sequenceBusy.Load() && (!quick || now.Sub(b.lastSequenced) >= b.opts.RunInterval) {
		b.lastSequenced = now
		if now.Sub(b.lastTidied) >= tidyEvery {
			b.lastTidied = now
			if _, err := b.tidyRuns(ctx, holeSettle, holeExpire, sweepEvery); err != nil {
				b.log.Warn("eventbus: sequencer upkeep", "err", err)
			}
		}
		n, err := b.sequence(ctx)
		if err != nil {
			return false, err
		}
		sequenced = n > 0
	}
	if l == nil {
		return false, nil // a producer, or another instance consumes: this one only sequences
	}
	moreEvents, err := b.batchPhase(ctx, l)
	if err != nil {
		return false, err
	}
	if sequenced && readAhead {
		moreEvents = true // the batch was read before they were sequenced
	}
	moreRetries, err := b.retryIfDue(ctx, l, kind, now)
	if err != nil {
		return false, err
	}
	return moreRetries || moreEvents, nil
}
