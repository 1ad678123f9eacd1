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
// service's lag. Whatever the backlog, it costs a read of the services
// table, one lookup per service in the seq index (the first event after
// its offset), and two for the oldest event not sequenced yet (the
// sequencer's probe, then that row by its key).
func (b *EventBus) Lags(ctx context.Context) ([]ServiceLag, error) {
	unnumbered, err := b.oldestUnnumbered(ctx)
	if err != nil {
		return nil, fmt.Errorf("lags: oldest unsequenced event: %w", err)
	}
	type offset struct {
		name string
		seq  int64
	}
	var offsets []offset
	var now int64
	err = b.query(ctx, nil, b.lagServicesQuery(), nil, func(rows *sql.Rows) error {
		var o offset
		if err := rows.Scan(&o.name, &o.seq, &now); err != nil {
			return err
		}
		offsets = append(offsets, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lags: %w", err)
	}
	out := make([]ServiceLag, 0, len(offsets))
	for _, o := range offsets {
		l := ServiceLag{Name: o.name}
		var first sql.NullInt64
		err := b.queryRow(ctx, nil, b.firstAfterQuery(), []any{o.seq}, &first)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("lags: %s: %w", o.name, err)
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
	return out, nil
}

// oldestUnnumbered returns the storing time of the oldest event not
// sequenced yet: the sequencer's probe finds its id, then its row is read
// by key (a query selecting more than the id could leave the probe's index).
func (b *EventBus) oldestUnnumbered(ctx context.Context) (sql.NullInt64, error) {
	var id int64
	var at sql.NullInt64
	err := b.queryRow(ctx, nil, b.q.oldestUnnumbered, nil, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return at, nil
	}
	if err != nil {
		return at, err
	}
	err = b.queryRow(ctx, nil, b.eventCreatedQuery(), []any{id}, &at)
	if errors.Is(err, sql.ErrNoRows) { // numbered (or cleaned) meanwhile
		return sql.NullInt64{}, nil
	}
	return at, err
}

func (b *EventBus) lagServicesQuery() string {
	return "SELECT name, consumed_seq, " + b.q.now + " FROM " + b.q.services + " ORDER BY name"
}

// firstAfterQuery reads the first event after an offset through the seq index.
func (b *EventBus) firstAfterQuery() string {
	return b.d.rebind("SELECT created_at FROM " + b.q.events + " WHERE seq > ? ORDER BY seq LIMIT 1")
}

func (b *EventBus) eventCreatedQuery() string {
	return b.d.rebind("SELECT created_at FROM " + b.q.events + " WHERE id = ?")
}
