package eventbus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ServiceStatus describes one consuming service.
type ServiceStatus struct {
	Name        string
	ConsumedSeq int64     // every event with seq <= ConsumedSeq is finished
	HeadSeq     int64     // the last sequence number given out
	Pending     int64     // events after ConsumedSeq, sequenced or not yet, not handled
	Retrying    int64     // events waiting for a retry (or parked)
	DeadLetters int64     // dead letters
	Owner       string    // the instance holding the lease ("" if none)
	LeaseUntil  time.Time // when that lease lapses (database clock)
	// StandbyUntil is when the presence last reported by a running
	// instance that does not hold the lease lapses (database clock; zero
	// if none ever reported). Until then RemoveService refuses.
	StandbyUntil time.Time
	UpdatedAt    time.Time
}

// Services reports every registered service and how far behind it is.
func (b *EventBus) Services(ctx context.Context) ([]ServiceStatus, error) {
	var out []ServiceStatus
	err := b.query(ctx, nil, b.q.serviceStatus, nil, func(rows *sql.Rows) error {
		var s ServiceStatus
		var lease, standby, updated int64
		if err := rows.Scan(&s.Name, &s.ConsumedSeq, &s.Owner, &lease, &standby, &updated, &s.HeadSeq, &s.Pending, &s.Retrying, &s.DeadLetters); err != nil {
			return err
		}
		s.LeaseUntil, s.UpdatedAt = time.UnixMilli(lease).UTC(), time.UnixMilli(updated).UTC()
		if standby > 0 {
			s.StandbyUntil = time.UnixMilli(standby).UTC()
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	return out, nil
}

// RemoveService deletes a service that no longer exists, with its offset,
// retries and dead letters, so it stops holding events back from the
// cleaner. It returns ErrServiceActive while any instance runs the service:
// the owner, whose lease lapses LeaseDuration after it stops renewing (at
// once on a graceful stop), or a standby, whose presence lapses
// LeaseDuration after the last standby stopped or died. Stop every instance
// first. Removing an unknown service is a no-op. An instance that finds
// its service removed anyway (it was frozen past LeaseDuration meanwhile)
// stops consuming and logs an error until it is restarted.
func (b *EventBus) RemoveService(ctx context.Context, name string) error {
	if err := validateServiceName(name); err != nil {
		return err
	}
	return b.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, b.q.removeService, name)
		if err != nil {
			return fmt.Errorf("remove service %s: %w", name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var owner string
			var lease, standby, now int64
			err := tx.QueryRowContext(ctx, b.q.serviceActivity, name).Scan(&owner, &lease, &standby, &now)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return nil
			case err != nil:
				return err
			case owner != "" && lease >= now:
				return fmt.Errorf("%w: %s is leased by %s for %s more", ErrServiceActive, name, owner, time.Duration(max(lease-now, 0))*time.Millisecond)
			default:
				return fmt.Errorf("%w: %s has a standby instance running (its presence lapses in %s)", ErrServiceActive, name, time.Duration(max(standby-now, 0))*time.Millisecond)
			}
		}
		if _, err := tx.ExecContext(ctx, b.q.removeServiceRetries, name); err != nil {
			return fmt.Errorf("remove service %s: %w", name, err)
		}
		return nil
	})
}

// standBy records, every third of LeaseDuration, that this instance runs
// the service without holding its lease, so RemoveService refuses while it
// does. If the service's row is gone, the service was removed while this
// instance could not report in (it was frozen, or cut off from the
// database): it then stops consuming, and says so, loudly, until restarted.
func (b *EventBus) standBy(ctx context.Context) error {
	if time.Since(b.standbyAt) < b.opts.LeaseDuration/3 {
		return nil
	}
	start := time.Now()
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	res, err := b.exec(ctx, nil, b.q.renewStandby, b.opts.LeaseDuration.Milliseconds(), b.service)
	if err != nil {
		return fmt.Errorf("report standby: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("report standby: %w", err)
	} else if n == 0 {
		// MySQL counts changed rows only: the same value written twice in
		// one millisecond changes nothing. Look at the row itself.
		var rows int
		if err := b.queryRow(ctx, nil, b.q.serviceExists, []any{b.service}, &rows); err != nil {
			return fmt.Errorf("report standby: %w", err)
		}
		if rows == 0 {
			b.removed.Store(true)
			b.logRemoved()
			return nil
		}
	}
	b.standbyAt = start
	return nil
}

// logRemoved reports, at most once a minute, that this instance's service
// was removed under it.
func (b *EventBus) logRemoved() {
	if time.Since(b.removedLogged) < time.Minute {
		return
	}
	b.removedLogged = time.Now()
	b.log.Error("eventbus: this service was removed (RemoveService) while this instance ran it; it consumes nothing more. Restart it to register the service again, or stop it")
}
