package conformance

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("RemoveServiceRefusedWhileAStandbyRuns", testRemoveWhileStandby)
	register("RemoveServiceAfterAStandbyDied", testRemoveAfterStandbyDied)
	register("RemovedStandbySaysSo", testRemovedStandbySaysSo)
}

func nop(context.Context, *ddd.DomainEvent) error { return nil }

// waitRemovable retries RemoveService of name while it answers
// ErrServiceActive, until it succeeds or timeout passes.
func waitRemovable(t testing.TB, timeout time.Duration, admin *eventbus.EventBus, name string) {
	t.Helper()
	waitFor(t, timeout, name+" to become removable", func() bool {
		err := admin.RemoveService(context.Background(), name)
		if !errors.Is(err, eventbus.ErrServiceActive) {
			must(t, err)
			return true
		}
		return false
	})
}

// testRemoveWhileStandby: the owner is running, then stopped, while a
// standby that polls rarely runs: RemoveService is refused both times.
func testRemoveWhileStandby(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	admin := newBus(t, db, "admin")
	// Both poll once at start and then only hourly, so the standby's next
	// timer poll never comes during the test; a wake-up may still bring
	// one forward, after which the standby holds the lease (allowed below).
	slow := []eventbus.Option{eventbus.WithRunInterval(time.Hour), eventbus.WithLeaseDuration(time.Minute)}
	owner := newBus(t, tdb.Open(t), "svc", append(slow, eventbus.WithInstanceID("owner-instance"))...)
	must(t, owner.RegisterEventHandler(nop))
	dispatchN(t, admin, "before", 0, 1)
	stopOwner := start(t, owner)
	waitFor(t, 15*time.Second, "the owner's first poll", func() bool { return owner.Stats().Handled == 1 })
	if err := admin.RemoveService(ctx, "svc"); !errors.Is(err, eventbus.ErrServiceActive) {
		t.Fatalf("removing a service its owner runs: err %v, want ErrServiceActive", err)
	}

	// The standby's first poll finds the lease taken and reports it
	// stands by. (A commit wakes the owner too: it may number and handle
	// "during" meanwhile.)
	dispatchN(t, admin, "during", 0, 1)
	standby := newBus(t, tdb.Open(t), "svc", append(slow, eventbus.WithInstanceID("standby-instance"))...)
	must(t, standby.RegisterEventHandler(nop))
	start(t, standby)
	waitFor(t, 15*time.Second, "Services to report the standby", func() bool {
		st, _ := statusOf(t, admin, "svc")
		return !st.StandbyUntil.IsZero()
	})
	stopOwner() // a graceful stop releases the lease at once
	if st, _ := statusOf(t, admin, "svc"); st.Owner == "owner-instance" {
		t.Fatalf("the stopped owner still holds the lease: %+v", st)
	}
	// The standby may also have taken the lease by now: a wake-up (the
	// change probe seeing "during" sequenced) can bring its poll forward.
	// Either way the refusal must name the standby (as a standby, or as
	// the lease's holder "standby-instance"), not the stopped owner.
	err := admin.RemoveService(ctx, "svc")
	if !errors.Is(err, eventbus.ErrServiceActive) || !strings.Contains(err.Error(), "standby") || strings.Contains(err.Error(), "owner-instance") {
		t.Fatalf("removing a service a standby runs: err %v, want ErrServiceActive naming the standby", err)
	}
	if _, ok := statusOf(t, admin, "svc"); !ok {
		t.Fatal("the service was removed")
	}
}

// testRemoveAfterStandbyDied: a standby that dies (its connections cut,
// or its pool closed) stops reporting in; the service becomes removable
// once its presence lapses, LeaseDuration later, not never.
func testRemoveAfterStandbyDied(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	admin := newBus(t, db, "admin")
	opts := []eventbus.Option{eventbus.WithLeaseDuration(time.Second)}
	owner := newBus(t, tdb.Open(t), "svc", opts...)
	must(t, owner.RegisterEventHandler(nop))
	stopOwner := start(t, owner)
	waitFor(t, 15*time.Second, "the owner's lease", func() bool { return leased(t, db, "svc") })
	pool, kill := openKillable(t, tdb)
	standby := newBus(t, pool, "svc", opts...)
	must(t, standby.RegisterEventHandler(nop))
	start(t, standby)
	waitFor(t, 15*time.Second, "the standby to report in", func() bool {
		st, _ := statusOf(t, admin, "svc")
		return !st.StandbyUntil.IsZero()
	})
	kill()
	stopOwner()
	began := time.Now()
	waitRemovable(t, 15*time.Second, admin, "svc")
	if _, ok := statusOf(t, admin, "svc"); ok {
		t.Fatal("the service is still listed")
	}
	t.Logf("removable %s after the standby died (LeaseDuration 1s)", time.Since(began).Round(time.Millisecond))
}

// testRemovedStandbySaysSo: a standby frozen past its presence (its
// connection paused) misses the removal; when it wakes it finds its
// service gone and says so at ERROR, instead of standing by in silence,
// and does not bring the service back.
func testRemovedStandbySaysSo(t *testing.T, tdb *dbtest.Database) {
	if tdb.Addr == "" {
		t.Skip("SQLite is embedded: there is no connection to pause")
	}
	db := tdb.Open(t)
	admin := newBus(t, db, "admin")
	// The owner polls once, then hourly, holding a long lease: only the
	// standby numbers what comes later, which shows it has polled.
	owner := newBus(t, tdb.Open(t), "svc", eventbus.WithRunInterval(time.Hour), eventbus.WithLeaseDuration(time.Minute))
	must(t, owner.RegisterEventHandler(nop))
	dispatchN(t, admin, "before", 0, 1)
	stopOwner := start(t, owner)
	waitFor(t, 15*time.Second, "the owner's first poll", func() bool { return owner.Stats().Handled == 1 })
	dispatchN(t, admin, "during", 0, 1)
	proxy := dbtest.NewProxy(t, tdb.Addr)
	logs := newLogSink()
	standby := newBus(t, tdb.OpenVia(t, proxy.Addr()), "svc", eventbus.WithLeaseDuration(time.Second), eventbus.WithLogger(logs.logger()))
	must(t, standby.RegisterEventHandler(nop))
	start(t, standby)
	waitFor(t, 15*time.Second, "the standby's first poll", func() bool {
		st, _ := statusOf(t, admin, "svc")
		return !st.StandbyUntil.IsZero()
	})
	proxy.Pause()
	t.Cleanup(proxy.Resume)
	stopOwner()
	waitRemovable(t, 15*time.Second, admin, "svc")
	proxy.Resume()
	waitFor(t, 20*time.Second, "the standby to say its service was removed", func() bool { return logs.count("was removed") > 0 })
	if _, ok := statusOf(t, admin, "svc"); ok {
		t.Fatal("the standby brought the removed service back")
	}
}
