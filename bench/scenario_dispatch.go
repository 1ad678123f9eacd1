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

func runDispatch(ctx context.Context, t *target, cfg *config) ([]*row, error) {
	systems := []system{sysLib, sysPeer, sysRaw}
	if !t.hasPeer() {
		systems = []system{sysLib, sysRaw}
	}
	var rows []*row
	for _, per := range []int{1, 10} {
		r := newRow(fmt.Sprintf("Dispatch, %d event(s) per business tx, %d producers", per, cfg.producers), "tx/s", +1)
		for round := range cfg.rounds {
			for _, s := range order(round, systems...) {
				rate, err := dispatchRun(ctx, t, cfg, s, per)
				if err != nil {
					return nil, fmt.Errorf("%s, %d per tx: %w", systemNames[s], per, err)
				}
				progress.Printf("dispatch %d/tx round %d %s: %.0f tx/s", per, round+1, systemNames[s], rate)
				r.add(s, rate)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// dispatchRun returns the business transactions per second of one system.
func dispatchRun(ctx context.Context, t *target, cfg *config, s system, per int) (float64, error) {
	if err := t.reset(ctx); err != nil {
		return 0, err
	}
	db, err := t.openGorm()
	if err != nil {
		return 0, err
	}
	defer closeGorm(db)
	if err := db.Exec(businessDDL()).Error; err != nil {
		return 0, fmt.Errorf("business table: %w", err)
	}
	var txFn func(ctx context.Context, i int) error
	switch s {
	case sysLib:
		bus, err := newLibBus(t, "producer")
		if err != nil {
			return 0, err
		}
		defer bus.close()
		// The engine runs on the bus's pool (the bus writes with the
		// engine's transaction, which must be on its database).
		eng, err := ddd.NewEngine(bus.db, bus.Options()...)
		if err != nil {
			return 0, err
		}
		txFn = func(ctx context.Context, i int) error {
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
	case sysPeer:
		if err := wmInit(t); err != nil {
			return 0, err
		}
		txFn = func(ctx context.Context, i int) error {
			return inBusinessTx(ctx, db, i, per, func(tx *sql.Tx, sender string) error {
				msgs := make([]*message.Message, 0, per)
				for k := range per {
					msgs = append(msgs, wmMessage(i*per+k, sender))
				}
				return wmPublishTx(t.kind, tx, msgs...)
			})
		}
	case sysRaw:
		if err := db.Exec(rawDDL(t.kind)).Error; err != nil {
			return 0, fmt.Errorf("raw table: %w", err)
		}
		query := rawInsertSQL(t.kind, per)
		txFn = func(ctx context.Context, i int) error {
			return inBusinessTx(ctx, db, i, per, func(tx *sql.Tx, sender string) error {
				return rawInsertTx(ctx, tx, query, i*per, per, sender)
			})
		}
	}
	// Warm up the pool, then time cfg.dispatchTx transactions.
	warm := 2 * cfg.producers
	if err := produce(ctx, cfg.producers, 0, warm, txFn); err != nil {
		return 0, err
	}
	begin := time.Now()
	if err := produce(ctx, cfg.producers, warm, warm+cfg.dispatchTx, txFn); err != nil {
		return 0, err
	}
	return float64(cfg.dispatchTx) / since(begin), nil
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
