package eventbus

import (
	"context"
	"database/sql"
	"errors"
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
// service's lag. It costs one indexed lookup per service (the first event
// after its offset, by the seq index) and one for the oldest event not
// sequenced yet, whatever the backlog.
func (b *EventBus) Lags(ctx context.Context) ([]ServiceLag, error) {
	ev := b.q.events
	var unnumbered sql.NullInt64
	err := b.sqlDB.QueryRowContext(ctx, b.d.rebind("SELECT created_at FROM "+ev+" WHERE "+b.d.unnumbered(ev)+" ORDER BY id LIMIT 1")).Scan(&unnumbered)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("lags: oldest unsequenced event: %w", err)
	}
	rows, err := b.sqlDB.QueryContext(ctx, b.lagQuery())
	if err != nil {
		return nil, fmt.Errorf("lags: %w", err)
	}
	defer rows.Close()
	var out []ServiceLag
	for rows.Next() {
		var l ServiceLag
		var now int64
		var first sql.NullInt64
		if err := rows.Scan(&l.Name, &now, &first); err != nil {
			return nil, fmt.Errorf("lags: %w", err)
		}
		oldest := first
		if unnumbered.Valid && (!oldest.Valid || unnumbered.Int64 < oldest.Int64) {
			oldest = unnumbered
		}
		if oldest.Valid {
			l.Oldest = time.UnixMilli(oldest.Int64).UTC()
			l.Age = time.Duration(max(now-oldest.Int64, 0)) * time.Millisecond
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// lagQuery reads each service's first event after its offset (its oldest
// sequenced, unconsumed one) through the seq index.
func (b *EventBus) lagQuery() string {
	return b.d.rebind("SELECT s.name, " + b.q.now + ", (SELECT e.created_at FROM " + b.q.events + " e" +
		" WHERE e.seq > s.consumed_seq ORDER BY e.seq LIMIT 1) FROM " + b.q.services + " s ORDER BY s.name")
}
