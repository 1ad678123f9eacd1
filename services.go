package eventbus

import (
	"context"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/internal/store"
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
	// Partitions is the service's partition count (Config.Partitions).
	// A service of more than one partition is listed once with its name
	// (its ConsumedSeq and Owner then mean nothing: its partitions hold
	// them), and once per partition: Name "<service>#<p>/<N>", Parent the
	// service, Partition p, with the partition's own offset, owner and
	// lease. A partition's Lag is HeadSeq - ConsumedSeq (in events of all
	// partitions); Pending counts every event after its offset.
	Partitions int
	Partition  int
	Parent     string
}

// Lag is how many sequenced events lie after the offset (of every
// partition, for a partition's row).
func (s ServiceStatus) Lag() int64 { return max(s.HeadSeq-s.ConsumedSeq, 0) }

// Services reports every registered service and how far behind it is.
func (b *EventBus) Services(ctx context.Context) ([]ServiceStatus, error) {
	rows, err := b.st.ServiceStatuses(ctx)
	if err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	var out []ServiceStatus
	for _, r := range rows {
		s := ServiceStatus{Name: r.Name, ConsumedSeq: r.ConsumedSeq, HeadSeq: r.HeadSeq, Pending: r.Pending, Retrying: r.Retrying,
			DeadLetters: r.DeadLetters, Owner: r.Owner, LeaseUntil: time.UnixMilli(r.LeaseUntil).UTC(), UpdatedAt: time.UnixMilli(r.UpdatedAt).UTC(),
			Partitions: r.Partitions, Partition: r.Part, Parent: r.Parent}
		if r.Parent != "" {
			s.Partitions = 0
			if n := partitionsOf(rows, r.Parent); n > 0 {
				s.Partitions = n
			}
		}
		if r.StandbyUntil > 0 {
			s.StandbyUntil = time.UnixMilli(r.StandbyUntil).UTC()
		}
		out = append(out, s)
	}
	return out, nil
}

// partitionsOf is the partition count of service among rows.
func partitionsOf(rows []store.ServiceRow, service string) int {
	for _, r := range rows {
		if r.Name == service {
			return r.Partitions
		}
	}
	return 0
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
	out, err := b.st.RemoveService(ctx, name)
	switch {
	case err != nil || out.Removed || !out.Found:
		return err
	case out.Owner != "" && out.LeaseUntil >= out.Now:
		return fmt.Errorf("%w: %s is leased by %s for %s more", ErrServiceActive, name, out.Owner, time.Duration(max(out.LeaseUntil-out.Now, 0))*time.Millisecond)
	default:
		return fmt.Errorf("%w: %s has a standby instance running (its presence lapses in %s)", ErrServiceActive, name, time.Duration(max(out.StandbyUntil-out.Now, 0))*time.Millisecond)
	}
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
	exists, err := b.st.ReportStandby(ctx, b.service, b.opts.LeaseDuration.Milliseconds())
	if err != nil {
		return fmt.Errorf("report standby: %w", err)
	}
	if !exists {
		b.removed.Store(true)
		b.logRemoved()
		return nil
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

// registerService creates the service's row, at the start position, unless
// it exists: one server-side step (see register_service in migration 0007,
// and the SQLite store). At the latest position its offset is the
// last number given once every event committed before the call is
// sequenced, under the sequencer's lock: exactly the events committed after
// it are delivered.
func (b *EventBus) registerService(ctx context.Context) error {
	pos := int64(store.StartLatest)
	switch b.opts.StartPosition.kind {
	case startEarliest:
		pos = 0
	case startAfter:
		pos = b.opts.StartPosition.seq
	}
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	return b.st.RegisterService(ctx, b.service, pos)
}
