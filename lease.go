package eventbus

import (
	"context"
	"errors"
	"time"

	"github.com/dddbus/eventbus/internal/store"
)

// ensureLease returns the lease if this instance holds it (renewing it when
// a third of its duration has passed) or can take it; nil if another live
// instance holds it.
func (b *EventBus) ensureLease(ctx context.Context) (*lease, error) {
	if l := b.lease; l != nil && l.isLost() {
		b.lease = nil
		b.observeLease(ctx, LeaseLost, l)
	}
	if l := b.lease; l != nil {
		age := l.age()
		if age < b.opts.LeaseDuration/3 {
			return l, nil
		}
		err := b.renewLease(ctx, l)
		switch {
		case err == nil:
			return l, nil
		case errors.Is(err, store.ErrLeaseLost):
			b.log.Warn("eventbus: lease lost; another instance took over", "epoch", l.epoch)
			b.lease = nil
			b.observeLease(ctx, LeaseLost, l)
		case age > b.opts.LeaseDuration*2/3:
			// Could not renew in time: assume another instance will take
			// over, and stop working under this lease.
			b.lease = nil
			b.observeLease(ctx, LeaseLost, l)
			return nil, err
		default:
			return nil, err
		}
	}
	return b.acquireLease(ctx)
}

func (b *EventBus) acquireLease(ctx context.Context) (*lease, error) {
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	start := time.Now()
	got, ok, err := b.st.AcquireLease(ctx, store.LeaseParams{Service: b.service, Row: b.curRow(), Owner: b.owner, LeaseMillis: b.opts.LeaseDuration.Milliseconds()})
	if err != nil || !ok {
		return nil, err // held by a live instance (or the service was removed)
	}
	l := &lease{row: b.curRow(), epoch: got.Epoch, offset: got.Offset, renewedAt: start}
	b.lease = l
	if l.row != b.service {
		b.log.Info("eventbus: consuming", "owner", b.owner, "partition", l.row, "epoch", l.epoch, "offset", l.offset)
	} else {
		b.log.Info("eventbus: consuming", "owner", b.owner, "epoch", l.epoch, "offset", l.offset)
	}
	b.observeLease(ctx, LeaseAcquired, l)
	return l, nil
}

// leaseParams name l for the store's fenced writes.
func (b *EventBus) leaseParams(l *lease) store.LeaseParams {
	return store.LeaseParams{Service: b.service, Row: l.row, Owner: b.owner, Epoch: l.epoch, LeaseMillis: b.opts.LeaseDuration.Milliseconds()}
}

// leaseUsable reports whether work may start under l: it is not known to be
// lost, and was renewed less than two thirds of its duration ago (judged on
// this instance's monotonic clock, from before the renewal was sent, so
// the database's own expiry comes later).
func (b *EventBus) leaseUsable(l *lease) bool {
	return !l.isLost() && l.age() <= b.opts.LeaseDuration*2/3
}

// renewLease extends l; ErrLeaseLost if another instance has taken it. A
// renewal that takes longer than a third of the lease is abandoned: the
// lease could not be kept with such a database anyway, and a stalled
// connection must not hold the caller.
func (b *EventBus) renewLease(ctx context.Context, l *lease) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, b.opts.LeaseDuration/3)
	defer cancel()
	if err := b.st.RenewLease(ctx, b.leaseParams(l)); err != nil {
		if errors.Is(err, store.ErrLeaseLost) {
			l.markLost()
			return store.ErrLeaseLost
		}
		return err
	}
	l.renewed(start)
	return nil
}

// heartbeat keeps l while a batch runs: it renews the lease once a third
// of it has passed, and calls halt (no further event starts) when the lease
// is lost or when it could not be renewed for two thirds of its duration.
// In the second case another instance may take over soon, and this one
// cannot tell: starting more events would risk handling them twice at once.
// Renewals run apart from the watch, so a stalled connection cannot keep
// the instance working past its lease. It also renews others, the leases
// of this instance's other partitions, which wait while this batch runs.
// It stops when done is closed.
func (b *EventBus) heartbeat(ctx context.Context, l *lease, others []*lease, done <-chan struct{}, halt func()) {
	d := b.opts.LeaseDuration
	t := time.NewTicker(d / 6)
	defer t.Stop()
	renewed := make(chan error, 1)
	renewing := false
	othersDone := make(chan struct{}, 1)
	renewingOthers := false
	for {
		select {
		case <-done:
			return
		case <-othersDone:
			renewingOthers = false
		case err := <-renewed:
			renewing = false
			if errors.Is(err, store.ErrLeaseLost) {
				halt()
				return
			} else if err != nil {
				b.log.Warn("eventbus: heartbeat", "err", err)
			}
		case <-t.C:
			age := l.age()
			if !b.leaseUsable(l) {
				b.log.Warn("eventbus: could not renew the lease; starting no further events of this batch", "epoch", l.epoch, "since", age.Round(time.Millisecond))
				halt()
				return
			}
			if !renewingOthers && len(others) > 0 {
				renewingOthers = true
				b.bg.Go(func() {
					defer func() { othersDone <- struct{}{} }()
					for _, o := range others {
						if !o.isLost() && o.age() >= d/3 {
							_ = b.renewLease(ctx, o) // a lost one is marked; ensureLease drops it
						}
					}
				})
			}
			if !renewing && age >= d/3 {
				renewing = true
				// Start waits for it; the batch does not, so a stalled
				// renewal never holds the batch up.
				b.bg.Go(func() { renewed <- b.renewLease(ctx, l) })
			}
		}
	}
}
