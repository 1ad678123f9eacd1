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

// Small connection pools: SetMaxOpenConns(1) is the usual advice for
// SQLite, and a pool smaller than the number of goroutines that want it is
// common everywhere. The bus must never wait for a second connection while
// it holds one, or it waits forever (or until the caller's deadline).
func init() {
	register("PoolOfOneProducer", testPoolOneProducer)
	register("PoolOfOneConsumerWithRetriesAndDeadLetters", testPoolOneConsumer)
	register("PoolOfOneHalfMessagesCheckerCleaner", testPoolOneHalfMessages)
	register("PoolOfFourConcurrentEngines", testPoolFourEngines)
}

// poolOpTimeout bounds each operation of these tests: on a pool of one
// connection, an operation that waits for a second one fails at it.
const poolOpTimeout = 10 * time.Second

// openPool returns a new pool to tdb of at most n connections.
func openPool(t testing.TB, tdb *dbtest.Database, n int) *gorm.DB {
	t.Helper()
	db := tdb.Open(t)
	sqlDB, err := db.DB()
	must(t, err)
	sqlDB.SetMaxOpenConns(n)
	sqlDB.SetMaxIdleConns(n)
	return db
}

// startRecording starts a new bus of service on db whose handler is a new
// recorder.
func startRecording(t testing.TB, db *gorm.DB, service string, opts ...eventbus.Option) (*eventbus.EventBus, *recorder) {
	t.Helper()
	bus := newBus(t, db, service, opts...)
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	start(t, bus)
	return bus, rec
}

// within runs op with a deadline and fails the test, naming what, if op
// fails or does not finish in time.
func within(t testing.TB, what string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), poolOpTimeout)
	defer cancel()
	if err := op(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s did not finish within %s (waiting for a second connection?): %v", what, poolOpTimeout, err)
		}
		t.Fatalf("%s: %v", what, err)
	}
}

// raise runs one unit of work on eng that creates an order and raises n
// events (of sendType), and returns their IDs.
func raise(t testing.TB, eng *ddd.Engine, id string, n int, sendType ddd.SendType) []string {
	t.Helper()
	ids, err := raiseErr(eng, id, n, sendType)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// raiseErr is raise for goroutines other than the test's.
func raiseErr(eng *ddd.Engine, id string, n int, sendType ddd.SendType) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), poolOpTimeout)
	defer cancel()
	var ids []string
	err := eng.Run(ctx, func(ctx context.Context, uow *ddd.UnitOfWork) error {
		ids = nil
		for i := range n {
			evt, err := ddd.NewDomainEvent(id, OrderPlaced{OrderID: id, N: i}, ddd.WithSendType(sendType))
			if err != nil {
				return err
			}
			uow.Raise(evt)
			ids = append(ids, evt.ID)
		}
		return uow.Tx().Create(&order{ID: id, Amount: n}).Error
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("Engine.Run raising %d events did not finish within %s (waiting for a second connection?): %w", n, poolOpTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("Engine.Run raising %d events: %w", n, err)
	}
	return ids, nil
}

// testPoolOneProducer: the engine, Dispatch with the caller's transaction
// and without one, for event counts that are and are not kept prepared,
// while the bus (and a consumer) run on the same single connection.
func testPoolOneProducer(t *testing.T, tdb *dbtest.Database) {
	db := openPool(t, tdb, 1)
	bus := newBus(t, db, "pool-producer")
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	eng := newEngine(t, db, bus)
	start(t, bus)

	var ids []string
	for i, n := range []int{1, 2, 1, 3, 5, 17, 600} {
		ids = append(ids, raise(t, eng, fmt.Sprintf("engine-%d", i), n, ddd.SendNormal)...)
	}
	ids = append(ids, raise(t, eng, "engine-fifo", 2, ddd.SendFIFO)...)
	for i, n := range []int{1, 4, 1} {
		evts := make([]*ddd.DomainEvent, n)
		for j := range evts {
			evts[j] = mustEvent(t, fmt.Sprintf("caller-tx-%d", i), j)
			ids = append(ids, evts[j].ID)
		}
		within(t, fmt.Sprintf("Dispatch of %d events in the caller's transaction", n), func(ctx context.Context) error {
			return db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
				return bus.Dispatch(ddd.ContextWithTx(ctx, tx), evts...)
			})
		})
		bus.Notify()
		evt := mustEvent(t, fmt.Sprintf("own-tx-%d", i), 0)
		ids = append(ids, evt.ID)
		within(t, "Dispatch in its own transaction", func(ctx context.Context) error { return bus.Dispatch(ctx, evt) })
	}
	waitFor(t, 30*time.Second, "every event on the one connection", func() bool { return rec.distinct() >= len(ids) })
	rec.checkExactlyOnce(t, ids)
}

// testPoolOneConsumer: a consumer on one connection whose batches store
// retries and dead letters (the offset commit and the retry rows share a
// transaction), while its cleaner and TX checker run on the same pool.
func testPoolOneConsumer(t *testing.T, tdb *dbtest.Database) {
	db := openPool(t, tdb, 1)
	var mu sync.Mutex
	failed := map[string]bool{}
	rec := newRecorder()
	rec.fail = func(evt *ddd.DomainEvent) error {
		switch evt.Sender {
		case "dead":
			return ddd.Permanent(errors.New("cannot be handled"))
		case "retry":
			mu.Lock()
			defer mu.Unlock()
			if !failed[evt.ID] {
				failed[evt.ID] = true
				return errors.New("fails once")
			}
		}
		return nil
	}
	bus := newBus(t, db, "pool-consumer", eventbus.WithLimitPerRun(7),
		eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 3}),
		eventbus.WithCleanCron("@every 1s"), eventbus.WithRetentionTime(0))
	must(t, bus.RegisterEventHandler(rec.handle))
	must(t, bus.RegisterEventTXChecker(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) {
		return ddd.TXCommit, nil
	}))
	start(t, bus)

	check := tdb.Open(t) // the test's own queries stay off the pool under test
	producer := newBus(t, check, "pool-producer")
	var want []string
	// The first batch stores a retry: its offset commit is the first use
	// of that statement, in the transaction that stores the retry rows.
	for round := range 3 {
		want = append(want, dispatchN(t, producer, "retry", round*4, 4)...)
		dispatchN(t, producer, "dead", round*2, 2)
		want = append(want, dispatchN(t, producer, "good", round*10, 10)...)
	}
	// A retry's row goes in the transaction after its handler returned:
	// wait for that too (a row that never goes fails the wait).
	waitFor(t, 30*time.Second, "every event handled or dead-lettered, no retry waiting", func() bool {
		return count(t, check, "SELECT COUNT(*) FROM ddd_retries WHERE state = 1") == 6 && rec.distinct() >= len(want) &&
			count(t, check, "SELECT COUNT(*) FROM ddd_retries WHERE state = 0") == 0
	})
	waitCaughtUp(t, check, "pool-consumer")
	rec.checkExactlyOnce(t, want)
}

// testPoolOneHalfMessagesCheckerCleaner: half messages (on their own and in
// the caller's transaction, committed and rolled back), the TX checker and
// the cleaner, all on one connection.
func testPoolOneHalfMessages(t *testing.T, tdb *dbtest.Database) {
	db := openPool(t, tdb, 1)
	check := tdb.Open(t)
	bus := newBus(t, db, "pool-tx", eventbus.WithRetentionTime(0))
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	must(t, bus.RegisterEventTXChecker(func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) {
		return ddd.TXCommit, nil
	}))
	eng := newEngine(t, db, bus)
	start(t, bus)

	var want []string
	begin := func(what string, ctx context.Context, evts ...*ddd.DomainEvent) context.Context {
		var tctx context.Context
		within(t, what, func(context.Context) error {
			var err error
			tctx, err = bus.DispatchBegin(ctx, evts...)
			return err
		})
		return tctx
	}
	resolve := func(what string, fn func(context.Context) error, tctx context.Context) {
		within(t, what, func(ctx context.Context) error {
			rctx, cancel := context.WithTimeout(tctx, poolOpTimeout)
			defer cancel()
			return fn(rctx)
		})
	}

	// On their own.
	a := []*ddd.DomainEvent{mustEvent(t, "half-a", 0), mustEvent(t, "half-a", 1)}
	resolve("Commit", bus.Commit, begin("DispatchBegin", context.Background(), a...))
	want = append(want, eventIDs(a)...)
	resolve("Rollback", bus.Rollback, begin("DispatchBegin", context.Background(), mustEvent(t, "half-b", 0)))

	// In the caller's transaction.
	c := mustEvent(t, "half-c", 0)
	var cctx context.Context
	within(t, "DispatchBegin in the caller's transaction", func(ctx context.Context) error {
		return db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var err error
			cctx, err = bus.DispatchBegin(ddd.ContextWithTx(ctx, tx), c)
			return err
		})
	})
	resolve("Commit after the caller's transaction", bus.Commit, context.WithoutCancel(cctx))
	want = append(want, c.ID)

	// The engine's two-phase flow.
	want = append(want, raise(t, eng, "half-engine", 2, ddd.SendTransaction)...)

	// The checker resolves one left pending.
	d := mustEvent(t, "half-d", 0)
	begin("DispatchBegin", context.Background(), d)
	want = append(want, d.ID)
	makeDue(t, check)
	within(t, "CheckTransactions", func(ctx context.Context) error {
		n, err := bus.CheckTransactions(ctx)
		if err == nil && n != 1 {
			err = fmt.Errorf("resolved %d transactions, want 1", n)
		}
		return err
	})
	waitFor(t, 30*time.Second, "every committed half message", func() bool { return rec.distinct() >= len(want) })
	waitCaughtUp(t, check, "pool-tx")
	rec.checkExactlyOnce(t, want)

	// The cleaner removes what was consumed and resolved.
	within(t, "Clean", func(ctx context.Context) error {
		r, err := bus.Clean(ctx)
		if err == nil && (r.Events == 0 || r.Transactions == 0) {
			err = fmt.Errorf("cleaned %+v, want events and transactions", r)
		}
		return err
	})
}

// testPoolFourEngines: four goroutines run units of work at once on a pool
// of four connections: each holds one for its transaction and must not
// need another.
func testPoolFourEngines(t *testing.T, tdb *dbtest.Database) {
	db := openPool(t, tdb, 4)
	bus := newBus(t, db, "pool-four")
	eng := newEngine(t, db, bus)
	consumer, rec := startRecording(t, tdb.Open(t), "pool-four-consumer")

	const workers, runs = 4, 8
	ids := make([][]string, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range runs {
				got, err := raiseErr(eng, fmt.Sprintf("four-%d-%d", w, i), 1+(w+i)%3, ddd.SendNormal)
				if err != nil {
					errs[w] = err
					return
				}
				ids[w] = append(ids[w], got...)
			}
		})
	}
	wg.Wait()
	var all []string
	for w := range workers {
		if errs[w] != nil {
			t.Errorf("worker %d: %v", w, errs[w])
		}
		all = append(all, ids[w]...)
	}
	if t.Failed() {
		t.FailNow()
	}
	consumer.Notify()
	waitFor(t, 30*time.Second, "every event", func() bool { return rec.distinct() >= len(all) })
	rec.checkExactlyOnce(t, all)
}
