package main

import (
	"context"
	"database/sql"
	"fmt"
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

func runDispatch(ctx context.Context, t *target, cfg *config, _ *deliveries) ([]*row, error) {
	systems := []system{sysLib, sysPeer, sysRaw}
	if !t.hasPeer() {
		systems = []system{sysLib, sysRaw}
	}
	var rows []*row
	for _, per := range []int{1, 10} {
		r := newRow(fmt.Sprintf("Dispatch, %d event(s) per business tx, %d producers", per, cfg.producers), "tx/s", +1)
		fns, closeAll, err := dispatchSetup(ctx, t, per)
		if err != nil {
			return nil, fmt.Errorf("%d per tx: %w", per, err)
		}
		next := 0 // transaction index, unique across blocks
		for _, s := range systems {
			warm := 2 * cfg.producers
			if err := produce(ctx, cfg.producers, next, next+warm, fns[s]); err != nil {
				closeAll()
				return nil, fmt.Errorf("%s warm-up: %w", systemNames[s], err)
			}
			next += warm
		}
		for block := range cfg.rounds * dispatchBlocks {
			for _, s := range order(block, systems...) {
				begin := time.Now()
				if err := produce(ctx, cfg.producers, next, next+cfg.dispatchTx, fns[s]); err != nil {
					closeAll()
					return nil, fmt.Errorf("%s, %d per tx: %w", systemNames[s], per, err)
				}
				next += cfg.dispatchTx
				rate := float64(cfg.dispatchTx) / since(begin)
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
func dispatchSetup(ctx context.Context, t *target, per int) (fns [nSystems]func(context.Context, int) error, closeAll func(), err error) {
	if err := t.reset(ctx); err != nil {
		return fns, nil, err
	}
	var closers []func()
	closeAll = func() {
		for _, c := range closers {
			c()
		}
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
	closers = append(closers, func() { closeGorm(db) })
	if err := db.Exec(businessDDL()).Error; err != nil {
		return fns, nil, fmt.Errorf("business table: %w", err)
	}

	// eventbus: the engine runs on the bus's pool (the bus writes with the
	// engine's transaction, which must be on its database).
	bus, err := newLibBus(t, "producer")
	if err != nil {
		return fns, nil, err
	}
	closers = append(closers, bus.close)
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

	// watermill-sql: a publisher on the business transaction's *sql.Tx.
	if t.hasPeer() {
		if err := wmInit(t); err != nil {
			return fns, nil, err
		}
		peerDB, err := t.openGorm()
		if err != nil {
			return fns, nil, err
		}
		closers = append(closers, func() { closeGorm(peerDB) })
		fns[sysPeer] = func(ctx context.Context, i int) error {
			return inBusinessTx(ctx, peerDB, i, per, func(tx *sql.Tx, sender string) error {
				msgs := make([]*message.Message, 0, per)
				for k := range per {
					msgs = append(msgs, wmMessage(i*per+k, sender))
				}
				return wmPublishTx(t.kind, tx, msgs...)
			})
		}
	}

	// raw SQL: one plain INSERT of the event rows.
	if err := db.Exec(rawDDL(t.kind)).Error; err != nil {
		return fns, nil, fmt.Errorf("raw table: %w", err)
	}
	query := rawInsertSQL(t.kind, per)
	fns[sysRaw] = func(ctx context.Context, i int) error {
		return inBusinessTx(ctx, db, i, per, func(tx *sql.Tx, sender string) error {
			return rawInsertTx(ctx, tx, query, i*per, per, sender)
		})
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
			for {
				i := int(next.Add(1)) - 1
				if i >= to || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					errs <- err
					return
				}
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
