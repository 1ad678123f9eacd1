package conformance

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("BadInputIsRejectedAndChangesNothing", testBadInput)
	register("InvalidOptionsAreErrors", testInvalidOptions)
	register("ConcurrentWritersAndPoller", testConcurrentWriters)
}

func testBadInput(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bus := newBus(t, db, "strict-input", eventbus.WithMaxPayloadBytes(1024))
	ctx := context.Background()
	good := mustEvent(t, "ok", 1)
	withPayload := func(p string) *ddd.DomainEvent {
		e := *mustEvent(t, "x", 1)
		e.Payload = []byte(p)
		return &e
	}
	mutate := func(f func(*ddd.DomainEvent)) *ddd.DomainEvent {
		e := *mustEvent(t, "x", 1)
		f(&e)
		return &e
	}
	bad := map[string]*ddd.DomainEvent{
		"nil event":         nil,
		"oversized payload": withPayload(`"` + strings.Repeat("a", 2000) + `"`),
		"invalid JSON":      withPayload(`{"broken":`),
		"empty payload":     withPayload(``),
		"empty type":        mutate(func(e *ddd.DomainEvent) { e.Type = "" }),
		"empty sender":      mutate(func(e *ddd.DomainEvent) { e.Sender = "" }),
		"long sender":       mutate(func(e *ddd.DomainEvent) { e.Sender = strings.Repeat("s", 300) }),
		"empty id":          mutate(func(e *ddd.DomainEvent) { e.ID = "" }),
		"bad send type":     mutate(func(e *ddd.DomainEvent) { e.SendType = 9 }),
		"zero time":         mutate(func(e *ddd.DomainEvent) { e.CreatedAt = time.Time{} }),
	}
	for name, evt := range bad {
		// The good event travels with the bad one: the whole call must fail.
		if err := bus.Dispatch(ctx, good, evt); !errors.Is(err, eventbus.ErrInvalidEvent) {
			t.Errorf("%s: Dispatch err = %v, want ErrInvalidEvent", name, err)
		}
		if _, err := bus.DispatchBegin(ctx, good, evt); !errors.Is(err, eventbus.ErrInvalidEvent) {
			t.Errorf("%s: DispatchBegin err = %v, want ErrInvalidEvent", name, err)
		}
	}
	// Values NewDomainEvent cannot encode are errors, not panics.
	if _, err := ddd.NewDomainEvent("s", map[string]any{"f": func() {}}); !errors.Is(err, ddd.ErrInvalidEvent) {
		t.Errorf("func payload: err %v, want ErrInvalidEvent", err)
	}
	if _, err := ddd.NewDomainEvent("s", nil); !errors.Is(err, ddd.ErrInvalidEvent) {
		t.Errorf("nil payload: err %v, want ErrInvalidEvent", err)
	}
	// A *gorm.DB that is not a transaction is refused, not silently used.
	if err := bus.Dispatch(ddd.ContextWithTx(ctx, db), good); !errors.Is(err, eventbus.ErrInvalidTransaction) {
		t.Errorf("non-transaction in context: err %v, want ErrInvalidTransaction", err)
	}
	// A transaction on another database is refused: the outbox must share
	// the business transaction's database.
	other := dbtest.SQLite(t).Open(t)
	otherTx := other.Begin()
	defer otherTx.Rollback()
	if err := bus.Dispatch(ddd.ContextWithTx(ctx, otherTx), good); !errors.Is(err, eventbus.ErrForeignTransaction) {
		t.Errorf("foreign transaction: err %v, want ErrForeignTransaction", err)
	}
	if err := bus.RegisterEventHandler(nil); !errors.Is(err, eventbus.ErrInvalidHandler) {
		t.Errorf("nil handler: err %v", err)
	}
	must(t, bus.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }))
	if err := bus.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }); !errors.Is(err, eventbus.ErrHandlerRegistered) {
		t.Errorf("second handler: err %v, want ErrHandlerRegistered", err)
	}
	if err := bus.Commit(ctx); !errors.Is(err, eventbus.ErrNoTransaction) {
		t.Errorf("Commit without transaction: err %v, want ErrNoTransaction", err)
	}
	for _, table := range []string{"ddd_events", "ddd_transactions", "ddd_transaction_events"} {
		if n := count(t, db, "SELECT COUNT(*) FROM "+table); n != 0 {
			t.Errorf("%s has %d rows after rejected input, want 0", table, n)
		}
	}
}

func testInvalidOptions(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	bad := map[string]eventbus.Option{
		"zero RunInterval":        eventbus.WithRunInterval(0),
		"negative RunInterval":    eventbus.WithRunInterval(-time.Second),
		"zero LimitPerRun":        eventbus.WithLimitPerRun(0),
		"huge LimitPerRun":        eventbus.WithLimitPerRun(1 << 20),
		"zero ConsumeConcurrent":  eventbus.WithConsumeConcurrent(0),
		"negative HandlerTimeout": eventbus.WithHandlerTimeout(-1),
		"negative RetentionTime":  eventbus.WithRetentionTime(-time.Hour),
		"negative DL retention":   eventbus.WithDeadLetterRetention(-time.Hour),
		"zero TXCheckTimeout":     eventbus.WithTXCheckTimeout(0),
		"zero TXCheckMaxChecks":   eventbus.WithTXCheckMaxChecks(0),
		"short LeaseDuration":     eventbus.WithLeaseDuration(time.Millisecond),
		"negative StartAt":        eventbus.WithStartPosition(eventbus.StartAt(-5)),
		"zero MaxPayloadBytes":    eventbus.WithMaxPayloadBytes(0),
		"huge MaxPayloadBytes":    eventbus.WithMaxPayloadBytes(1 << 30),
		"bad cron spec":           eventbus.WithCleanCron("every tuesday"),
		"cron with seconds field": eventbus.WithCleanCron("0 0 0 * * *"),
		"nil logger":              eventbus.WithLogger(nil),
		"nil retry strategy":      eventbus.WithRetryStrategy(nil),
		"negative LimitRetry":     eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: -1}),
		"negative interval":       eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 1, Interval: -time.Second}),
		"negative custom":         eventbus.WithRetryStrategy(&eventbus.CustomRetry{Intervals: []time.Duration{time.Second, -1}}),
		"prefix with quote":       eventbus.WithTablePrefix("x'; DROP TABLE users; --"),
		"prefix uppercase":        eventbus.WithTablePrefix("Events_"),
		"empty prefix":            eventbus.WithTablePrefix(""),
		"nil option":              nil,
	}
	for name, opt := range bad {
		if _, err := eventbus.NewEventBus("svc", db, opt); !errors.Is(err, eventbus.ErrInvalidOption) {
			t.Errorf("%s: err %v, want ErrInvalidOption", name, err)
		}
	}
	for _, name := range []string{"", "has space", "semi;colon", "quote'", strings.Repeat("n", 65)} {
		if _, err := eventbus.NewEventBus(name, db); !errors.Is(err, eventbus.ErrInvalidServiceName) {
			t.Errorf("service %q: err %v, want ErrInvalidServiceName", name, err)
		}
	}
	if _, err := eventbus.NewEventBus("svc", nil); !errors.Is(err, eventbus.ErrInvalidDB) {
		t.Errorf("nil db: err %v, want ErrInvalidDB", err)
	}
	// Rejected options create nothing.
	if db.Migrator().HasTable("ddd_events") {
		t.Error("a rejected NewEventBus created tables")
	}
}

// testConcurrentWriters: producers write while the poller consumes; on
// SQLite none of them may fail with "database is locked".
func testConcurrentWriters(t *testing.T, tdb *dbtest.Database) {
	const writers, perWriter = 8, 60
	db := tdb.Open(t)
	bus := newBus(t, db, "busy")
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	eng := newEngine(t, db, bus)
	start(t, bus)
	errs := make(chan error, writers*perWriter)
	ids := make(chan string, writers*perWriter)
	done := make(chan struct{})
	for w := range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range perWriter {
				var id string
				err := runRetrying(tdb, func() error {
					return eng.Run(context.Background(), func(ctx context.Context, uow *ddd.UnitOfWork) error {
						o := &order{ID: senderName(w) + "-" + strings.Repeat("x", i%3) + time.Now().Format("150405.000000000")}
						// Read before writing, as business code does (by
						// key: a whole-table read would make SERIALIZABLE
						// writers conflict with every concurrent insert).
						var n int64
						if err := uow.Tx().Model(&order{}).Where("id = ?", o.ID).Count(&n).Error; err != nil {
							return err
						}
						evt := mustEvent(t, senderName(w), i)
						id = evt.ID
						uow.Raise(evt)
						return uow.Tx().Create(o).Error
					})
				})
				if err != nil {
					errs <- err
					continue
				}
				ids <- id
			}
		}()
	}
	for range writers {
		<-done
	}
	close(errs)
	close(ids)
	for err := range errs {
		t.Errorf("writer failed: %v", err)
	}
	var all []string
	for id := range ids {
		all = append(all, id)
	}
	waitFor(t, 30*time.Second, "every event", func() bool { return rec.deliveries() >= len(all) })
	rec.checkExactlyOnce(t, all)
}

// runRetrying runs a unit of work, and again after a serialization failure
// (SQLSTATE 40001: a deadlock on MySQL) when the session's default level is
// SERIALIZABLE, as an application at that level must: the writers above
// read the table they insert into, which SERIALIZABLE does not let
// concurrent transactions do freely. It backs off a random, growing few
// milliseconds between attempts, so that the writers do not collide again
// in step. At the default level it runs once.
func runRetrying(tdb *dbtest.Database, unit func() error) error {
	for attempt := 1; ; attempt++ {
		err := unit()
		if err == nil || tdb.Isolation == "" || attempt == 100 || !strings.Contains(err.Error(), "40001") {
			return err
		}
		time.Sleep(time.Duration(1+rand.IntN(2*min(attempt, 10))) * time.Millisecond)
	}
}
