package conformance

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// Wake-ups: a commit reaches consumers long before their poll. Consumers
// poll every 30s here, so a delivery within a few seconds can only come
// from a wake-up.

func init() {
	register("WakeEveryBusOfTheProcess", testWakeEveryBusOfTheProcess)
	register("WakeOtherProcess", testWakeOtherProcess)
	register("WakeListenerReconnects", testWakeListenerReconnects)
	register("WakeOffLeavesItToThePoll", testWakeOff)
}

const (
	wakeInterval = 30 * time.Second // the consumers' poll: never what delivers
	wakeDeadline = 5 * time.Second  // far below it
)

// deliveries records when each event ID was handled.
type deliveries struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (d *deliveries) handle(_ context.Context, evt *ddd.DomainEvent) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen[evt.ID] = true
	return nil
}

func (d *deliveries) has(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen[id]
}

// The README's wiring: the engine is built from a producing bus that is
// not started; two consuming buses of other services are. A commit through
// the engine wakes both (no probe or listener: the process's own wake-up).
func testWakeEveryBusOfTheProcess(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	quiet := []eventbus.Option{eventbus.WithRunInterval(wakeInterval), eventbus.WithListenNotify(false), eventbus.WithChangeProbeInterval(0)}
	orders := newBus(t, db, "orders", quiet...)
	eng, err := ddd.NewEngine(db, orders.Options()...)
	must(t, err)
	var consumers []*deliveries
	for _, name := range []string{"billing", "shipping"} {
		d := &deliveries{seen: map[string]bool{}}
		b := newBus(t, db, name, quiet...)
		must(t, b.RegisterEventHandler(d.handle))
		start(t, b)
		consumers = append(consumers, d)
	}
	// Both run (a bus is woken from the moment Start runs; one started
	// after a commit finds its events at its first poll).
	waitFor(t, 10*time.Second, "both consumers to take their leases", func() bool {
		st, err := orders.Services(context.Background())
		owned := 0
		for _, s := range st {
			if s.Owner != "" {
				owned++
			}
		}
		return err == nil && owned == 2
	})
	for i := range 3 {
		evt := mustEvent(t, "order-1", i)
		began := time.Now()
		must(t, eng.Run(context.Background(), func(ctx context.Context, uow *ddd.UnitOfWork) error {
			uow.Raise(evt)
			return nil
		}))
		for j, d := range consumers {
			waitFor(t, wakeDeadline, "consumer "+string(rune('A'+j))+" to receive event "+evt.ID, func() bool { return d.has(evt.ID) })
		}
		t.Logf("event %d: both consumers within %s", i, time.Since(began))
	}
}

// A consumer in another OS process, with the wake-up options at their
// defaults (PostgreSQL: LISTEN/NOTIFY; MySQL, SQLite: the change probe),
// receives events dispatched here within seconds.
func testWakeOtherProcess(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "orders") // never started
	consumer := startStandby(t, tdb, "billing", helperIntervalEnv+"="+wakeInterval.String())
	for i := range 3 {
		evt := mustEvent(t, "order-1", i)
		began := time.Now()
		must(t, producer.Dispatch(context.Background(), evt))
		waitFor(t, wakeDeadline, "the other process to receive "+evt.ID, func() bool { return !consumer.delivered(evt.ID).IsZero() })
		t.Logf("event %d: other process after %s", i, consumer.delivered(evt.ID).Sub(began))
	}
	// Bursts from concurrent transactions, the bus's own and the
	// engine's, most of which skip their NOTIFY on PostgreSQL (coalesced):
	// none waits for the poll.
	eng, err := ddd.NewEngine(db, producer.Options()...)
	must(t, err)
	burst := make([]*ddd.DomainEvent, 48)
	var wg sync.WaitGroup
	for i := range burst {
		burst[i] = mustEvent(t, senderName(i), 0)
		wg.Go(func() {
			if i%2 == 0 {
				if err := producer.Dispatch(context.Background(), burst[i]); err != nil {
					t.Error(err)
				}
				return
			}
			err := eng.Run(context.Background(), func(ctx context.Context, uow *ddd.UnitOfWork) error {
				uow.Raise(burst[i])
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, evt := range burst {
		waitFor(t, wakeDeadline, "the other process to receive "+evt.ID+" of the burst", func() bool { return !consumer.delivered(evt.ID).IsZero() })
	}
}

// PostgreSQL: the server drops the listener's connection (as in a
// restart); events dispatched while it reconnects and after are all
// received within seconds.
func testWakeListenerReconnects(t *testing.T, tdb *dbtest.Database) {
	if tdb.Dialect != "postgres" {
		t.Skip("LISTEN/NOTIFY is PostgreSQL's")
	}
	db := tdb.Open(t)
	producer := newBus(t, db, "orders") // never started: this process does not listen
	name := producer.ListenerName()
	consumer := startStandby(t, tdb, "billing", helperIntervalEnv+"="+wakeInterval.String())
	listener := func() (pid int64) {
		db.Raw("SELECT COALESCE(MAX(pid), 0) FROM pg_stat_activity WHERE application_name = ? AND query LIKE 'LISTEN %'", name).Scan(&pid)
		return pid
	}
	var pid int64
	waitFor(t, 30*time.Second, "the other process's listener", func() bool { pid = listener(); return pid != 0 })
	first := mustEvent(t, "order-1", 0)
	must(t, producer.Dispatch(context.Background(), first))
	waitFor(t, wakeDeadline, "the first event", func() bool { return !consumer.delivered(first.ID).IsZero() })

	var ok bool
	must(t, db.Raw("SELECT pg_terminate_backend(?)", pid).Scan(&ok).Error)
	if !ok {
		t.Fatalf("could not terminate the listener's backend %d", pid)
	}
	during := mustEvent(t, "order-1", 1) // while the listener is away, or just back
	must(t, producer.Dispatch(context.Background(), during))
	waitFor(t, 30*time.Second, "the listener to reconnect", func() bool { p := listener(); return p != 0 && p != pid })
	after := mustEvent(t, "order-1", 2)
	must(t, producer.Dispatch(context.Background(), after))
	for _, evt := range []*ddd.DomainEvent{during, after} {
		waitFor(t, wakeDeadline, "event "+evt.ID+" after the reconnection", func() bool { return !consumer.delivered(evt.ID).IsZero() })
	}
}

// With ListenNotify and the change probe off, another process learns of
// an event only at its poll: none within a second when it polls every 30s
// (the options do turn the wake-ups off). The first event, committed
// before it starts, comes with its first poll, which is then over.
func testWakeOff(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "orders", eventbus.WithListenNotify(false))
	first := mustEvent(t, "order-1", 0)
	must(t, producer.Dispatch(context.Background(), first))
	consumer := startStandby(t, tdb, "billing", helperIntervalEnv+"="+wakeInterval.String(), helperNoWakeEnv+"=1")
	waitFor(t, wakeDeadline, "the first event, at the other process's first poll", func() bool { return !consumer.delivered(first.ID).IsZero() })
	second := mustEvent(t, "order-1", 1)
	must(t, producer.Dispatch(context.Background(), second))
	end := time.Now().Add(time.Second)
	for time.Now().Before(end) {
		if !consumer.delivered(second.ID).IsZero() {
			t.Fatal("the other process received the event within a second with every wake-up off and a 30s poll")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
