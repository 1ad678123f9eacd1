package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

func init() {
	register("RolledBackNeverDelivered", testRolledBackNeverDelivered)
	register("ExactlyOnceManyServicesAndSenders", testExactlyOnceMany)
	register("RestartFromStoredOffset", testRestartFromOffset)
	register("EngineWakesPoller", testEngineWakesPoller)
	register("SkippedEventsAdvance", testSkippedEvents)
	register("StartPositions", testStartPositions)
	register("GracefulStopWaitsForHandlers", testGracefulStop)
}

// Business table the engine writes to, next to the events.
type order struct {
	ddd.Events `gorm:"-"`
	ID         string `gorm:"primaryKey;size:64"`
	Amount     int
}

func (o *order) place(amount int) error {
	o.Amount = amount
	return o.Raise(o.ID, OrderPlaced{OrderID: o.ID, N: amount})
}

func newEngine(t testing.TB, db *gorm.DB, bus *eventbus.EventBus) *ddd.Engine {
	t.Helper()
	if err := db.AutoMigrate(&order{}); err != nil {
		t.Fatal(err)
	}
	eng, err := ddd.NewEngine(db, bus.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func placeOrder(eng *ddd.Engine, id string, n int, fail error) error {
	return eng.Run(context.Background(), func(ctx context.Context, uow *ddd.UnitOfWork) error {
		o := &order{ID: id}
		if err := o.place(n); err != nil {
			return err
		}
		uow.Track(o)
		if err := uow.Tx().Create(o).Error; err != nil {
			return err
		}
		return fail
	})
}

func testRolledBackNeverDelivered(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "billing")
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	eng := newEngine(t, db, bus)
	start(t, bus)

	// The command fails after its aggregate raised an event: the engine
	// rolls the transaction back, and the event with it.
	boom := errors.New("payment declined")
	if err := placeOrder(eng, "rolled-back-1", 1, boom); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want %v", err, boom)
	}
	// A transaction the caller rolls back after Dispatch.
	evt := mustEvent(t, "rolled-back-2", 1)
	tx := db.Begin()
	must(t, bus.Dispatch(ddd.ContextWithTx(context.Background(), tx), evt))
	must(t, tx.Rollback().Error)
	// A committed one, as a marker: once it is delivered, the rolled-back
	// ones (dispatched earlier) would have been too.
	must(t, placeOrder(eng, "committed", 1, nil))
	waitFor(t, 10*time.Second, "the committed event", func() bool { return rec.deliveries() >= 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.bySender) != 1 || rec.bySender["committed"] == nil {
		t.Fatalf("delivered senders %v, want only the committed one", rec.bySender)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events"); n != 1 {
		t.Fatalf("%d events stored, want 1", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM orders"); n != 1 {
		t.Fatalf("%d orders stored, want 1", n)
	}
}

func testExactlyOnceMany(t *testing.T, tdb *dbtest.Database) {
	const (
		services  = 3
		senders   = 24
		perSender = 100 // 2400 events
		producers = 6
	)
	db := tdb.Open(t)
	var recs []*recorder
	for i := range services {
		bus := newBus(t, tdb.Open(t), fmt.Sprintf("svc-%d", i), eventbus.WithConsumeConcurrent(8), eventbus.WithLimitPerRun(200))
		rec := newRecorder()
		must(t, bus.RegisterEventHandler(rec.handle))
		recs = append(recs, rec)
		start(t, bus)
	}
	producer := newBus(t, db, "producer")
	ids := make(chan string, senders*perSender)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			// Each producer owns some senders and sends their events in
			// order, a few per transaction, so per-sender order is defined.
			for s := p; s < senders; s += producers {
				for n := 0; n < perSender; {
					batch := min(1+n%3, perSender-n)
					var evts []*ddd.DomainEvent
					for k := 0; k < batch; k++ {
						evts = append(evts, mustEvent(t, senderName(s), n+k))
					}
					if err := producer.Dispatch(context.Background(), evts...); err != nil {
						t.Errorf("dispatch: %v", err)
						return
					}
					for _, e := range evts {
						ids <- e.ID
					}
					n += batch
				}
			}
		})
	}
	wg.Wait()
	close(ids)
	var all []string
	for id := range ids {
		all = append(all, id)
	}
	for i, rec := range recs {
		waitFor(t, 60*time.Second, fmt.Sprintf("service %d to receive %d events", i, len(all)), func() bool {
			return rec.deliveries() >= len(all)
		})
	}
	for _, rec := range recs {
		rec.checkExactlyOnce(t, all)
	}
}

func testRestartFromOffset(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	first := dispatchN(t, producer, "restart", 0, 50)

	bus := newBus(t, tdb.Open(t), "consumer")
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	stop := start(t, bus)
	waitFor(t, 10*time.Second, "first 50 events", func() bool { return rec.deliveries() >= 50 })
	stop()

	second := dispatchN(t, producer, "restart", 50, 30)
	// A new instance of the same service continues from the stored offset.
	bus2 := newBus(t, tdb.Open(t), "consumer")
	rec2 := newRecorder()
	must(t, bus2.RegisterEventHandler(rec2.handle))
	start(t, bus2)
	waitFor(t, 10*time.Second, "next 30 events", func() bool { return rec2.deliveries() >= 30 })
	rec.checkExactlyOnce(t, first)
	rec2.checkExactlyOnce(t, second)
}

func dispatchN(t testing.TB, bus *eventbus.EventBus, sender string, from, n int) []string {
	t.Helper()
	var ids []string
	for i := from; i < from+n; i++ {
		evt := mustEvent(t, sender, i)
		must(t, bus.Dispatch(context.Background(), evt))
		ids = append(ids, evt.ID)
	}
	return ids
}

func testEngineWakesPoller(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	// A poll interval far longer than the test's deadline: only the
	// engine's post-commit wake-up can deliver in time.
	bus := newBus(t, db, "waker", eventbus.WithRunInterval(time.Hour))
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	eng := newEngine(t, db, bus)
	start(t, bus)
	waitFor(t, 10*time.Second, "the bus to take its lease", func() bool { return leased(t, db, "waker") })
	for i := range 3 {
		must(t, placeOrder(eng, fmt.Sprintf("wake-%d", i), i, nil))
		waitFor(t, 10*time.Second, "delivery after wake-up", func() bool { return rec.deliveries() == i+1 })
	}
}

func leased(t testing.TB, db *gorm.DB, service string) bool {
	return count(t, db, "SELECT COUNT(*) FROM ddd_services WHERE name = ? AND owner <> ''", service) == 1
}

func testSkippedEvents(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "picky")
	router := ddd.NewRouter()
	var got sync.Map
	must(t, ddd.On(router, func(ctx context.Context, evt *ddd.DomainEvent, p OrderPlaced) error {
		got.Store(evt.ID, p)
		return nil
	}))
	must(t, bus.RegisterEventHandler(router.HandleEvent))
	start(t, bus)
	type Unrelated struct{ X int }
	other, err := ddd.NewDomainEvent("s", Unrelated{X: 1})
	must(t, err)
	wanted := mustEvent(t, "s", 1)
	must(t, bus.Dispatch(context.Background(), other, wanted))
	waitFor(t, 10*time.Second, "the wanted event", func() bool { _, ok := got.Load(wanted.ID); return ok })
	waitFor(t, 10*time.Second, "the offset to pass both", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_services s JOIN ddd_events e ON e.seq <= s.consumed_seq WHERE s.name = 'picky'") == 2
	})
	if st := bus.Stats(); st.Skipped != 1 || st.Handled != 1 || st.Failed != 0 {
		t.Fatalf("stats %+v, want 1 skipped, 1 handled, 0 failed", st)
	}
	if n, _ := bus.CountDeadLetters(context.Background()); n != 0 {
		t.Fatalf("%d dead letters, want 0", n)
	}
}

func testStartPositions(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	dispatchN(t, producer, "old", 0, 5)
	// An instance without a handler only produces: it sequences the events but
	// does not register as a service, so it holds nothing back.
	stop := start(t, producer)
	waitFor(t, 10*time.Second, "old events sequenced", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL") == 0
	})
	stop()
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_services"); n != 0 {
		t.Fatalf("%d services registered by a producer-only instance, want 0", n)
	}

	// A service registers when it first consumes; "latest" starts after
	// everything sequenced by then.
	latest := newBus(t, db, "latest", eventbus.WithStartPosition(eventbus.StartFromLatest))
	latestRec := newRecorder()
	must(t, latest.RegisterEventHandler(latestRec.handle))
	start(t, latest)
	waitFor(t, 10*time.Second, "latest to register", func() bool { return leased(t, db, "latest") })

	var thirdSeq int64
	must(t, db.Raw("SELECT seq FROM ddd_events ORDER BY seq LIMIT 1 OFFSET 2").Scan(&thirdSeq).Error)
	earliest := newBus(t, db, "earliest", eventbus.WithStartPosition(eventbus.StartFromEarliest))
	explicit := newBus(t, db, "explicit", eventbus.WithStartPosition(eventbus.StartAt(thirdSeq)))
	newIDs := dispatchN(t, producer, "new", 0, 2)

	waitFor(t, 10*time.Second, "latest to get the new events", func() bool { return latestRec.deliveries() >= 2 })
	latestRec.checkExactlyOnce(t, newIDs)
	want := map[*eventbus.EventBus]int{earliest: 7, explicit: 4}
	for bus, n := range want {
		rec := newRecorder()
		must(t, bus.RegisterEventHandler(rec.handle))
		start(t, bus)
		waitFor(t, 10*time.Second, fmt.Sprintf("%s to get %d events", bus.Service(), n), func() bool { return rec.deliveries() >= n })
		// No extra deliveries hide behind the wait: the offset is at the head.
		waitFor(t, 10*time.Second, "offset at head", func() bool {
			return count(t, db, "SELECT COUNT(*) FROM ddd_services s, ddd_sequencer q WHERE s.name = ? AND s.consumed_seq = q.last_seq", bus.Service()) == 1
		})
		if got := rec.deliveries(); got != n {
			t.Errorf("%s: %d deliveries, want %d", bus.Service(), got, n)
		}
	}
}

func testGracefulStop(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "graceful")
	// Buffered: the handler may run before the test waits on it, and its
	// signal must not be dropped then.
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var finished sync.Map
	must(t, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		if ctx.Err() != nil {
			return ctx.Err() // the handler's context must outlive the stop
		}
		finished.Store(evt.ID, true)
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Start(ctx) }()
	evt := mustEvent(t, "slow", 1)
	must(t, bus.Dispatch(context.Background(), evt))
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // a failed test must not leave the call blocked
	receive(t, entered, 20*time.Second, "the handler to start")
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Start returned (%v) while a handler was still running", err)
	case <-time.After(100 * time.Millisecond): // a bounded check that it is still waiting
	}
	releaseAll()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return after the handler finished")
	}
	if _, ok := finished.Load(evt.ID); !ok {
		t.Fatal("the in-flight handler did not finish successfully")
	}
	// Its progress was recorded: a restarted instance does not see it again.
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_services s JOIN ddd_events e ON e.seq <= s.consumed_seq WHERE s.name = 'graceful'"); n != 1 {
		t.Fatalf("offset covers %d events, want 1", n)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
