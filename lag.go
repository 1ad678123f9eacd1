package eventbus

import (
	"context"
	"fmt"
	"time"
)

// ServiceLag is how far behind a service is in time.
type ServiceLag struct {
	Name string
	// Oldest is when the oldest event the service has not consumed was
	// stored (database clock): the first one after its offset, or one not
	// sequenced yet. Zero when it has consumed everything. Events waiting
	// in its retry store are not counted here (see ServiceStatus.Retrying).
	Oldest time.Time
	// Age is how long ago Oldest was, on the database clock; 0 when none.
	Age time.Duration
}

// Lags reports, for every registered service, the age of the oldest event
// it has not consumed: with ServiceStatus.Pending (events) it is the
// service's lag. Whatever the backlog, it costs a read of the services
// table, one lookup per service in the seq index (the first event after
// its offset), and two for the oldest event not sequenced yet (the
// sequencer's probe, then that row by its key).
func (b *EventBus) Lags(ctx context.Context) ([]ServiceLag, error) {
	unsequenced, unsequencedOK, err := b.st.OldestUnsequencedCreated(ctx)
	if err != nil {
		return nil, fmt.Errorf("lags: oldest unsequenced event: %w", err)
	}
	offsets, now, err := b.st.Offsets(ctx)
	if err != nil {
		return nil, fmt.Errorf("lags: %w", err)
	}
	out := make([]ServiceLag, 0, len(offsets))
	for _, o := range offsets {
		l := ServiceLag{Name: o.Service}
		oldest, ok, err := b.st.FirstCreatedAfter(ctx, o.Seq)
		if err != nil {
			return nil, fmt.Errorf("lags: %s: %w", o.Service, err)
		}
		if unsequencedOK && (!ok || unsequenced < oldest) {
			oldest, ok = unsequenced, true
		}
		if ok {
			l.Oldest = time.UnixMilli(oldest).UTC()
			l.Age = time.Duration(max(now-oldest, 0)) * time.Millisecond
		}
		out = append(out, l)
	}
	return out, nil
}
