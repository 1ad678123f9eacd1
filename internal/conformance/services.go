package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

func init() {
	register("ServicesReportLag", testServicesReportLag)
	register("RemoveService", testRemoveService)
}

// failingBySender fails events of sender "retry" (retried an hour later, so
// they stay in the retry store) and of sender "dead" (at once a dead letter).
func failingBySender(evt *ddd.DomainEvent) error {
	switch evt.Sender {
	case "retry":
		return errors.New("downstream unavailable")
	case "dead":
		return ddd.Permanent(errors.New("cannot be handled"))
	}
	return nil
}

var hourlyRetry = eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 100, Interval: time.Hour})

// statusOf returns the Services entry of name, and whether there is one.
func statusOf(t testing.TB, bus *eventbus.EventBus, name string) (eventbus.ServiceStatus, bool) {
	t.Helper()
	all, err := bus.Services(context.Background())
	must(t, err)
	for _, s := range all {
		if s.Name == name {
			return s, true
		}
	}
	return eventbus.ServiceStatus{}, false
}

// waitCaughtUp waits until service has finished every event in the log:
// nothing unsequenced, and its offset at the sequencer's head.
func waitCaughtUp(t testing.TB, db *gorm.DB, service string) {
	t.Helper()
	waitFor(t, 15*time.Second, service+" to catch up", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL") == 0 &&
			count(t, db, "SELECT COUNT(*) FROM ddd_services s, ddd_sequencer q WHERE s.name = ? AND s.consumed_seq = q.last_seq", service) == 1
	})
}

func testServicesReportLag(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "lagging", hourlyRetry)
	must(t, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error { return failingBySender(evt) }))
	stop := start(t, bus)
	waitFor(t, 10*time.Second, "the service to register", func() bool { return leased(t, db, "lagging") })
	stop()

	// Nothing runs now, so nothing sequences the new events either: they
	// are still the service's backlog.
	dispatchN(t, bus, "good", 0, 5)
	st, ok := statusOf(t, bus, "lagging")
	if !ok || st.Pending != 5 || st.Retrying != 0 || st.DeadLetters != 0 || st.ConsumedSeq != 0 {
		t.Fatalf("stopped service: status %+v (found %t), want 5 pending at offset 0", st, ok)
	}

	// A new instance catches up; the failures are counted where they wait.
	bus2 := newBus(t, tdb.Open(t), "lagging", hourlyRetry)
	must(t, bus2.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error { return failingBySender(evt) }))
	start(t, bus2)
	dispatchN(t, bus, "retry", 0, 1)
	dispatchN(t, bus, "dead", 0, 2)
	waitCaughtUp(t, db, "lagging")
	st, _ = statusOf(t, bus, "lagging")
	if st.Pending != 0 || st.Retrying != 1 || st.DeadLetters != 2 || st.ConsumedSeq != st.HeadSeq || st.Owner == "" {
		t.Fatalf("running service: status %+v, want nothing pending, 1 retrying, 2 dead letters, offset at head, an owner", st)
	}
}

func testRemoveService(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	admin := newBus(t, db, "admin", eventbus.WithRetentionTime(0))
	stays := newBus(t, tdb.Open(t), "stays")
	must(t, stays.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }))
	start(t, stays)
	gone := newBus(t, tdb.Open(t), "gone", hourlyRetry)
	must(t, gone.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error { return failingBySender(evt) }))
	stopGone := start(t, gone)

	dispatchN(t, admin, "good", 0, 3)
	dispatchN(t, admin, "retry", 0, 1)
	dispatchN(t, admin, "dead", 0, 1)
	waitCaughtUp(t, db, "gone")
	waitCaughtUp(t, db, "stays")

	// While "gone" holds its lease it cannot be removed.
	if err := admin.RemoveService(ctx, "gone"); !errors.Is(err, eventbus.ErrServiceActive) {
		t.Fatalf("removing a running service: err %v, want ErrServiceActive", err)
	}
	// Its retry and dead letter pin their events.
	_, err := admin.Clean(ctx)
	must(t, err)
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events"); n != 2 {
		t.Fatalf("%d events left, want the 2 that gone still needs", n)
	}

	stopGone()
	// A graceful stop releases the lease; should the release be missed,
	// the lease still lapses after LeaseDuration (2s here).
	waitRemovable(t, 10*time.Second, admin, "gone")
	if _, ok := statusOf(t, admin, "gone"); ok {
		t.Fatal("the removed service is still listed")
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_retries WHERE service = 'gone'"); n != 0 {
		t.Fatalf("%d retries and dead letters of the removed service left", n)
	}
	if _, ok := statusOf(t, admin, "stays"); !ok {
		t.Fatal("the other service was removed too")
	}
	// Again, or an unknown name: nothing to do. A bad name is an error.
	must(t, admin.RemoveService(ctx, "gone"))
	must(t, admin.RemoveService(ctx, "never-existed"))
	if err := admin.RemoveService(ctx, "bad name!"); !errors.Is(err, eventbus.ErrInvalidServiceName) {
		t.Fatalf("bad name: err %v, want ErrInvalidServiceName", err)
	}
	// Nothing holds the events back any more.
	rep, err := admin.Clean(ctx)
	must(t, err)
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events"); n != 0 || rep.Events != 2 {
		t.Fatalf("%d events left after cleaning (report %+v), want 0 left and 2 deleted", n, rep)
	}
}
