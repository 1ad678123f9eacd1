package eventbus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// lease is this instance's ownership of its service's consumption.
//
// Fencing: taking the lease increments the service's epoch, and every write
// the owner makes (offset, retries) is conditional on owner and epoch being
// unchanged. An instance that stalls past its lease and wakes up finds its
// writes rejected (ErrLeaseLost) and cannot move the offset back or
// overwrite the new owner's progress. Expiry is judged on the database clock.
type lease struct {
	epoch  int64
	offset int64 // consumed_seq: every event with seq <= offset is finished

	mu        sync.Mutex
	renewedAt time.Time // local monotonic time of the last successful renewal
}

func (l *lease) renewed(at time.Time) {
	l.mu.Lock()
	l.renewedAt = at
	l.mu.Unlock()
}

func (l *lease) age() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Since(l.renewedAt)
}

// ensureLease returns the lease if this instance holds it (renewing it when
// a third of its duration has passed) or can take it; nil if another live
// instance holds it.
func (b *EventBus) ensureLease(ctx context.Context) (*lease, error) {
	if l := b.lease; l != nil {
		age := l.age()
		if age < b.opts.LeaseDuration/3 {
			return l, nil
		}
		// The offset update in flight renews the lease too, or reports it lost.
		if err := b.awaitOffset(); err != nil {
			if err = b.dropLease(err); err != nil {
				return nil, err
			}
			return b.acquireLease(ctx)
		}
		if l.age() < b.opts.LeaseDuration/3 {
			return l, nil
		}
		err := b.renewLease(ctx, l)
		switch {
		case err == nil:
			return l, nil
		case errors.Is(err, ErrLeaseLost):
			b.log.Warn("eventbus: lease lost; another instance took over", "epoch", l.epoch)
			b.lease = nil
		case age > b.opts.LeaseDuration*2/3:
			// Could not renew in time: assume another instance will take
			// over, and stop working under this lease.
			b.lease = nil
			return nil, err
		default:
			return nil, err
		}
	}
	_ = b.awaitOffset() // made under a lease already dropped: only its end is awaited
	return b.acquireLease(ctx)
}

func (b *EventBus) acquireLease(ctx context.Context) (*lease, error) {
	start := time.Now()
	var l *lease
	err := b.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, b.q.acquireLease, b.owner, b.opts.LeaseDuration.Milliseconds(), b.service, b.owner)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // held by a live instance (or the service was removed)
		}
		var owner string
		l = &lease{renewedAt: start}
		if err := tx.QueryRowContext(ctx, b.q.readLease, b.service).Scan(&owner, &l.epoch, &l.offset); err != nil {
			return err
		}
		if owner != b.owner {
			return fmt.Errorf("lease row names %q after acquiring it as %q", owner, b.owner)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("acquire lease: %w", err)
	}
	if l != nil {
		b.lease = l
		b.log.Info("eventbus: consuming", "owner", b.owner, "epoch", l.epoch, "offset", l.offset)
	}
	return l, nil
}

// renewLease extends l; ErrLeaseLost if another instance has taken it.
func (b *EventBus) renewLease(ctx context.Context, l *lease) error {
	start := time.Now()
	res, err := b.execPrepared(ctx, b.q.renewLease, b.opts.LeaseDuration.Milliseconds(), b.service, b.owner, l.epoch)
	if err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("renew lease: %w", err)
	} else if n == 0 {
		return ErrLeaseLost
	}
	l.renewed(start)
	return nil
}

// fence checks and extends the lease inside tx; every write the owner makes
// goes through it (or through commitOffset, which does the same).
func (b *EventBus) fence(ctx context.Context, tx *sql.Tx, l *lease) error {
	res, err := tx.ExecContext(ctx, b.q.fence, b.opts.LeaseDuration.Milliseconds(), b.service, b.owner, l.epoch)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// releaseLease hands the service over at once on a graceful stop.
func (b *EventBus) releaseLease(ctx context.Context) {
	l := b.lease
	if l == nil {
		return
	}
	b.lease = nil
	if _, err := b.sqlDB.ExecContext(ctx, b.q.releaseLease, b.service, b.owner, l.epoch); err != nil {
		b.log.Warn("eventbus: release lease", "err", err)
	}
}

// heartbeat renews l every third of the lease while a long batch runs; it
// calls lost if the lease is gone. It stops when done is closed.
func (b *EventBus) heartbeat(ctx context.Context, l *lease, done <-chan struct{}, lost func()) {
	t := time.NewTicker(b.opts.LeaseDuration / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if err := b.renewLease(ctx, l); errors.Is(err, ErrLeaseLost) {
				lost()
				return
			} else if err != nil {
				b.log.Warn("eventbus: heartbeat", "err", err)
			}
		}
	}
}
