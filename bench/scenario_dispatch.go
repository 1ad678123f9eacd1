package main

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"gorm.io/gorm"

	"github.com/dddbus/eventbus/ddd"
)

// Scenario 1, dispatch: each business transaction inserts one business row
// and stores 1 (or 10) events, on cfg.producers goroutines. eventbus goes
// through the Engine (ddd.NewEngine(db, bus.Options()...)); watermill-sql
// publishes with a publisher on the same *sql.Tx; the raw baseline inserts
// the event rows with one plain INSERT.

const dispatchSenders = 1000

// The three contestants' tables live side by side in one database, set up
// once per variant; the run then alternates blocks of cfg.dispatchTx
// transactions between them, rotating their order, cfg.rounds*dispatchBlocks
// blocks in all. Short alternating blocks put every contestant under the
// same background load (other developers share this server), and each
// ratio compares blocks run one after the other.
const dispatchBlocks = 4

func runDispatch(ctx context.Context, t *target, cfg *config, _ *deliveries, ce *contestantErrors) ([]*row, error) {
	systems := []system{sysLib, sysPeer, sysRaw}
	if !t.hasPeer() {
		systems = []system{sysLib, sysRaw}
	}
	var rows []*row
	for _, per := range []int{1, 10} {
		r := newRow(fmt.Sprintf("Dispatch, %d event(s) per business tx, %d producers", per, cfg.producers), "tx/s", +1)
		detail := fmt.Sprintf("%d per tx", per)
		fns, closeAll, err := dispatchSetup(ctx, t, ce, per)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", detail, err)
		}
		next := 0 // transaction index, unique across blocks
		for _, s := range systems {
			warm := 2 * cfg.producers
			if fns[s] != nil {
				from := next
				_, err := ce.attempt(ctx, runID{scenario: "dispatch", sys: s, detail: detail + ", warm-up"}, func(ctx context.Context) error {
					return produce(ctx, cfg.producers, from, from+warm, fns[s])
				})
				if err != nil {
					closeAll()
					return nil, err
				}
			}
			next += warm
		}
		for block := range cfg.rounds * dispatchBlocks {
			for _, s := range order(block, systems...) {
				if fns[s] == nil { // its setup failed (recorded)
					r.add(s, math.NaN())
					continue
				}
				from := next
				id := runID{scenario: "dispatch", sys: s, round: block/dispatchBlocks + 1, detail: fmt.Sprintf("%s, block %d", detail, block+1)}
				rate, err := measureRate(ctx, ce, id, nil, func(ctx context.Context, _ *deliveries) (float64, error) {
					begin := time.Now()
					if err := produce(ctx, cfg.producers, from, from+cfg.dispatchTx, fns[s]); err != nil {
						return 0, err
					}
					return float64(cfg.dispatchTx) / since(begin), nil
				})
				if err != nil {
					closeAll()
					return nil, err
				}
				next += cfg.dispatchTx
				r.add(s, rate)
			}
		}
		closeAll()
		progress.Printf("dispatch %d/tx: eventbus %.0f, watermill %.0f, raw %.0f tx/s (medians)", per,
			median(r.vals[sysLib]), median(r.vals[sysPeer]), median(r.vals[sysRaw]))
		rows = append(rows, r)
	}
	return rows, nil
}

// dispatchSetup creates every contestant's tables and returns, per
// contestant, the business transaction i of the variant with per events.
// A competitor whose setup fails is recorded in ce and left nil.
func dispatchSetup(ctx context.Context, t *target, ce *contestantErrors, per int) (fns [nSystems]func(context.Context, int) error, closeAll func(), err error) {
	if err := t.reset(ctx); err != nil {
		return fns, nil, err
	}
	var mu sync.Mutex // a timed-out setup may add its closer late
	var closers []func()
	closed := false
	addCloser := func(c func()) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c() // too late for closeAll: close at once
			return
		}
		closers = append(closers, c)
	}
	closeAll = func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range closers {
			c()
		}
		closers, closed = nil, true
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	db, err := t.openGorm()
	if err != nil {
		return fns, nil, err
	}
	addCloser(func() { closeGorm(db) })
	if err := db.Exec(businessDDL()).Error; err != nil {
		return fns, nil, fmt.Errorf("business table: %w", err)
	}

	// eventbus: the engine runs on the bus's pool (the bus writes with the
	// engine's transaction, which must be on its database).
	bus, err := newLibBus(t, "producer")
	if err != nil {
		return fns, nil, err
	}
	addCloser(bus.close)
	eng, err := ddd.NewEngine(bus.db, bus.Options()...)
	if err != nil {
		return fns, nil, err
	}
	fns[sysLib] = func(ctx context.Context, i int) error {
		return eng.Run(ctx, func(ctx context.Context, uow *ddd.UnitOfWork) error {
			sender := senderOf(i, dispatchSenders)
			o := newOrder(i*per, sender)
			if err := insertBusinessRow(uow.Tx(), &o); err != nil {
				return err
			}
			for k := range per {
				evt, err := ddd.NewDomainEvent(sender, newOrder(i*per+k, sender))
				if err != nil {
					return err
				}
				uow.Raise(evt)
			}
			return nil
		})
	}

	setup := func(s system) runID {
		return runID{scenario: "dispatch", sys: s, detail: fmt.Sprintf("%d per tx, setup", per)}
	}

	// watermill-sql: a publisher on the business transaction's *sql.Tx.
	if t.hasPeer() {
		fn, ok, err := measure(ctx, ce, setup(sysPeer), nil, func(ctx context.Context, _ *deliveries) (func(context.Context, int) error, error) {
			if err := wmInit(t); err != nil {
				return nil, err
			}
			peerDB, err := t.openGorm()
			if err != nil {
				return nil, err
			}
			addCloser(func() { closeGorm(peerDB) })
			return func(ctx context.Context, i int) error {
				return inBusinessTx(ctx, peerDB, i, per, func(tx *sql.Tx, sender string) error {
					msgs := make([]*message.Message, 0, per)
					for k := range per {
						msgs = append(msgs, wmMessage(i*per+k, sender))
					}
					return wmPublishTx(t.kind, tx, msgs...)
				})
			}, nil
		})
		if err != nil {
			return fns, nil, err
		}
		if ok {
			fns[sysPeer] = fn
		}
	}

	// raw SQL: one plain INSERT of the event rows.
	fn, ok, err := measure(ctx, ce, setup(sysRaw), nil, func(ctx context.Context, _ *deliveries) (func(context.Context, int) error, error) {
		if err := db.WithContext(ctx).Exec(rawDDL(t.kind)).Error; err != nil {
			return nil, fmt.Errorf("raw table: %w", err)
		}
		query := rawInsertSQL(t.kind, per)
		return func(ctx context.Context, i int) error {
			return inBusinessTx(ctx, db, i, per, func(tx *sql.Tx, sender string) error {
				return rawInsertTx(ctx, tx, query, i*per, per, sender)
			})
		}, nil
	})
	if err != nil {
		return fns, nil, err
	}
	if ok {
		fns[sysRaw] = fn
	}
	return fns, closeAll, nil
}

// inBusinessTx runs one GORM transaction that inserts business row i and
// then calls publish with the transaction's *sql.Tx.
func inBusinessTx(ctx context.Context, db *gorm.DB, i, per int, publish func(tx *sql.Tx, sender string) error) error {
	return db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		sender := senderOf(i, dispatchSenders)
		o := newOrder(i*per, sender)
		if err := insertBusinessRow(tx, &o); err != nil {
			return err
		}
		sqlTx, ok := tx.Statement.ConnPool.(*sql.Tx)
		if !ok {
			return fmt.Errorf("GORM transaction is a %T, not a *sql.Tx", tx.Statement.ConnPool)
		}
		return publish(sqlTx, sender)
	})
}

// produce runs fn for i in [from, to) on producers goroutines.
func produce(ctx context.Context, producers, from, to int, fn func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for range producers {
		wg.Go(func() {
			err := callSafe(func() error { // a panic is the contestant's error
				for {
					i := int(next.Add(1)) - 1
					if i >= to || ctx.Err() != nil {
						return nil
					}
					if err := fn(ctx, i); err != nil {
						return err
					}
				}
			})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}
