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
	UpdatedAt   time.Time
}

// Services reports every registered service and how far behind it is.
func (b *EventBus) Services(ctx context.Context) ([]ServiceStatus, error) {
	var out []ServiceStatus
	err := b.query(ctx, nil, b.q.serviceStatus, nil, func(rows *sql.Rows) error {
		var s ServiceStatus
		var lease, updated int64
		if err := rows.Scan(&s.Name, &s.ConsumedSeq, &s.Owner, &lease, &updated, &s.HeadSeq, &s.Pending, &s.Retrying, &s.DeadLetters); err != nil {
			return err
		}
		s.LeaseUntil, s.UpdatedAt = time.UnixMilli(lease).UTC(), time.UnixMilli(updated).UTC()
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
// cleaner. It returns ErrServiceActive while an instance holds its lease:
// stop the service first. Removing an unknown service is a no-op.
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
			err := tx.QueryRowContext(ctx, b.q.readLease, name).Scan(&owner, new(int64), new(int64))
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: %s is leased by %s", ErrServiceActive, name, owner)
		}
		if _, err := tx.ExecContext(ctx, b.q.removeServiceRetries, name); err != nil {
			return fmt.Errorf("remove service %s: %w", name, err)
		}
		return nil
	})
}
