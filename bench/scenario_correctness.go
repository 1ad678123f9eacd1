package main

import (
	"context"
	"database/sql"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"gorm.io/gorm"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
)

// Scenario correctness: does every committed event reach a live consumer,
// once, in its sender's order? cfg.producers producers together commit
// cfg.correctN business transactions, one event each, at cfg.correctRate
// per second (Poisson arrivals), over correctSenders senders; one consumer
// runs from the start, polling every cfg.correctPoll. A quarter of the
// transactions wait 1-10 ms after their writes, before their commit (see
// withSlowCommits), so that transactions commit out of the order in which
// they took their ids: a reader that only asks for rows after the last id
// it read skips the rows that commit late. Arrivals and delays are drawn
// from the round's seed: every contestant of a round gets the same. Not on
// SQLite: its one write lock commits transactions in the order they took
// it, and a delay holds that lock, so at 1,000 transactions/s a quarter
// waiting 5.5 ms on average would hold it longer than the run lasts.
//
// eventbus: the producers Dispatch in the business transaction on a bus
// of their own (started, without a handler); the consumer is another
// service's bus on a pool of its own. watermill-sql: a publisher on the
// business transaction, a subscriber with its default batch. raw SQL: an
// INSERT in the business transaction, and a reader of the rows after the
// last id it read, 1000 per query.
//
// After the last commit the run waits (settle) until the consumer has
// every event, or until it was handed nothing new for correctGrace, at
// most correctLimit: what it has not been handed then is lost.

const correctSenders = 200

func correctGrace(poll time.Duration) time.Duration { return 3*poll + 5*time.Second }

const correctLimit = 2 * time.Minute

func runCorrectness(ctx context.Context, t *target, cfg *config, dl *deliveries, ce *contestantErrors) ([]*row, error) {
	systems := []system{sysLib, sysPeer, sysRaw}
	if !t.hasPeer() {
		systems = []system{sysLib, sysRaw}
	}
	for round := range cfg.rounds {
		seed := uint64(round + 1)
		sched := poisson(cfg.correctN, cfg.correctRate, seed)
		if t.kind != "sqlite" {
			sched.withSlowCommits(seed)
		}
		for _, s := range order(round, systems...) {
			begin := time.Now()
			type result struct {
				tl   *tally
				took time.Duration
			}
			res, ok, err := measure(ctx, ce, runID{scenario: "correctness", sys: s, round: round + 1}, nil, func(ctx context.Context, _ *deliveries) (result, error) {
				tl, took, err := correctnessRun(ctx, t, cfg, s, sched)
				return result{tl, took}, err
			})
			if err != nil {
				return nil, err
			}
			if !ok {
				continue // recorded; no counts for this run
			}
			tl, took := res.tl, res.took
			c := tl.counts()
			slowLost := 0
			for _, i := range tl.lostEvents() {
				if sched.delayOf(i) > 0 {
					slowLost++
				}
			}
			progress.Printf("correctness round %d %s: %d committed in %s (%.0f/s), %d lost (%d of them slow commits), %d duplicated, %d out of order; p50 %.1f p99 %.1f ms (%s in all)",
				round+1, systemNames[s], c.committed, took.Round(100*time.Millisecond), float64(c.committed)/took.Seconds(),
				c.lost, slowLost, c.duplicated, c.reordered, c.p50, c.p99, time.Since(begin).Round(time.Second))
			dl.addCounts("correctness", s, c)
		}
	}
	return nil, nil
}

// correctnessRun runs one contestant through sched on a fresh database and
// returns its consumer's tally, closed, and how long the producers took
// (longer than the schedule when the database cannot keep up).
func correctnessRun(ctx context.Context, t *target, cfg *config, s system, sched *schedule) (*tally, time.Duration, error) {
	if err := t.reset(ctx); err != nil {
		return nil, 0, err
	}
	led := newLedger(len(sched.at), correctSenders)
	tl := newTally(led, true)
	var commitTx func(ctx context.Context, i int) error
	var stop func() error
	var err error
	switch s {
	case sysLib:
		commitTx, stop, err = correctLib(ctx, t, cfg, tl, sched)
	case sysPeer:
		commitTx, stop, err = correctPeer(ctx, t, cfg, tl, sched)
	case sysRaw:
		commitTx, stop, err = correctRaw(ctx, t, cfg, tl, sched)
	}
	if err != nil {
		return nil, 0, err
	}
	begin := time.Now()
	err = steady(ctx, sched, cfg.producers, correctSenders, func(ctx context.Context, i int) error {
		led.begin(i, i+1, time.Now())
		if err := commitTx(ctx, i); err != nil {
			return err
		}
		led.commit(i, i+1, time.Now())
		return nil
	})
	took := time.Since(begin)
	if err == nil {
		err = settle(ctx, correctGrace(cfg.correctPoll), correctLimit, tl)
	}
	if stopErr := stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return nil, 0, err
	}
	return tl, took, nil
}

// correctLib starts eventbus's producer and consumer buses and returns the
// business transaction of event i.
func correctLib(ctx context.Context, t *target, cfg *config, tl *tally, sched *schedule) (func(context.Context, int) error, func() error, error) {
	prod, err := newLibBus(t, "producer")
	if err != nil {
		return nil, nil, err
	}
	cons, err := newLibBus(t, "correctness", eventbus.WithRunInterval(cfg.correctPoll))
	if err != nil {
		prod.close()
		return nil, nil, err
	}
	closeAll := func() { cons.close(); prod.close() }
	err = cons.RegisterEventHandler(func(_ context.Context, evt *ddd.DomainEvent) error { tl.deliver(evt.ID); return nil })
	if err == nil {
		err = prod.db.Exec(businessDDL()).Error
	}
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	stopProd, stopCons := prod.start(ctx), cons.start(ctx)
	stop := func() error { stopCons(); stopProd(); closeAll(); return nil }
	commitTx := func(ctx context.Context, i int) error {
		sender := senderOf(i, correctSenders)
		o := newOrder(i, sender)
		evt, err := ddd.NewDomainEvent(sender, o, ddd.WithEventID(eventID(i)))
		if err != nil {
			return err
		}
		return prod.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := insertBusinessRow(tx, &o); err != nil {
				return err
			}
			if err := prod.Dispatch(ddd.ContextWithTx(ctx, tx), evt); err != nil {
				return err
			}
			time.Sleep(sched.delayOf(i)) // the slow commit, part of the workload
			return nil
		})
	}
	return commitTx, stop, nil
}

// correctPeer subscribes watermill-sql's consumer and returns the business
// transaction of event i.
func correctPeer(ctx context.Context, t *target, cfg *config, tl *tally, sched *schedule) (func(context.Context, int) error, func() error, error) {
	if err := wmInit(t); err != nil {
		return nil, nil, err
	}
	db, err := t.openGorm()
	if err != nil {
		return nil, nil, err
	}
	if err := db.Exec(businessDDL()).Error; err != nil {
		closeGorm(db)
		return nil, nil, err
	}
	cons, err := wmConsume(ctx, t, "correctness", 0, cfg.correctPoll, func(m *message.Message) { tl.deliver(m.UUID) })
	if err != nil {
		closeGorm(db)
		return nil, nil, err
	}
	stop := func() error { cons.close(); closeGorm(db); return nil }
	commitTx := func(ctx context.Context, i int) error {
		return inBusinessTx(ctx, db, i, 1, func(tx *sql.Tx, _ string) error {
			if err := wmPublishTx(t.kind, tx, wmMessage(i, senderOf(i, correctSenders))); err != nil {
				return err
			}
			time.Sleep(sched.delayOf(i))
			return nil
		})
	}
	return commitTx, stop, nil
}

// correctRaw starts the raw reader and returns the business transaction of
// event i.
func correctRaw(ctx context.Context, t *target, cfg *config, tl *tally, sched *schedule) (func(context.Context, int) error, func() error, error) {
	db, err := t.openGorm()
	if err != nil {
		return nil, nil, err
	}
	reader, err := t.openSQL()
	if err == nil {
		err = db.Exec(businessDDL()).Error
	}
	if err == nil {
		err = db.Exec(rawDDL(t.kind)).Error
	}
	if err != nil {
		closeGorm(db)
		if reader != nil {
			reader.Close()
		}
		return nil, nil, err
	}
	stopReader := rawConsume(ctx, reader, t.kind, "raw_events", cfg.correctPoll, tl.deliver)
	stop := func() error {
		err := stopReader()
		reader.Close()
		closeGorm(db)
		return err
	}
	query := rawInsertSQL(t.kind, 1)
	commitTx := func(ctx context.Context, i int) error {
		return inBusinessTx(ctx, db, i, 1, func(tx *sql.Tx, _ string) error {
			if err := rawInsertTx(ctx, tx, query, i, 1, senderOf(i, correctSenders)); err != nil {
				return err
			}
			time.Sleep(sched.delayOf(i))
			return nil
		})
	}
	return commitTx, stop, nil
}
