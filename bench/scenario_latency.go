package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
)

// Scenario 3, latency: cfg.producers producers together commit
// cfg.latencyRate business transactions per second (Poisson arrivals, see
// poisson), one event each, for cfg.latencyDur. Latency runs from the
// moment the commit returns to the handler call.
//
// eventbus, the README's wiring: the engine is built from a producing bus
// that is not started; two consuming buses of other services (billing,
// shipping) on the same pool are started in the same process, woken by
// the engine's post-commit hook ("same process"). A third service runs in
// another OS process (-child wake) polling every P, the wake-up options
// at their defaults (PostgreSQL: LISTEN/NOTIFY; MySQL, SQLite: the change
// probe every 50ms): "other process". watermill-sql: a subscriber polling
// every P (its default batch), the producer publishing in the business
// transaction.

// The wait after the last commit (see settle): the grace covers a few
// polls of the slowest consumer.
func latencyGrace(poll time.Duration) time.Duration { return 3*poll + 5*time.Second }
func latencyLimit(poll time.Duration) time.Duration { return 3*poll + time.Minute }

// latencySeed seeds the arrivals of the latency runs.
const latencySeed = 20

func runLatency(ctx context.Context, t *target, cfg *config, dl *deliveries, ce *contestantErrors) ([]*row, error) {
	local50 := newRow("Latency, same process, README wiring (2 consuming buses), p50", "ms", -1)
	local99 := newRow("Latency, same process, README wiring (2 consuming buses), p99", "ms", -1)
	rows := []*row{local50, local99}
	systems := []system{sysLib, sysPeer}
	if !t.hasPeer() {
		systems = []system{sysLib}
	}
	for i, poll := range cfg.pollIntervals {
		r50 := newRow(fmt.Sprintf("Latency, other process polling every %s, p50", poll), "ms", -1)
		r99 := newRow(fmt.Sprintf("Latency, other process polling every %s, p99", poll), "ms", -1)
		for _, s := range order(i, systems...) {
			id := runID{scenario: "latency", sys: s, detail: "poll " + poll.String()}
			switch s {
			case sysLib:
				var local, remote []float64
				_, err := ce.attempt(ctx, id, func(ctx context.Context) (err error) {
					local, remote, err = latencyLib(ctx, t, cfg, dl, poll)
					return err
				})
				if err != nil {
					return nil, err
				}
				progress.Printf("latency eventbus poll %s: local p50 %.2f p99 %.2f; remote p50 %.2f p99 %.2f ms",
					poll, pct(local, 50), pct(local, 99), pct(remote, 50), pct(remote, 99))
				local50.add(sysLib, pct(local, 50))
				local99.add(sysLib, pct(local, 99))
				r50.add(sysLib, pct(remote, 50))
				r99.add(sysLib, pct(remote, 99))
			case sysPeer:
				// lat is nil when the run failed: NaN percentiles, "—".
				lat, ok, err := measure(ctx, ce, id, dl, func(ctx context.Context, dl *deliveries) ([]float64, error) {
					return latencyPeer(ctx, t, cfg, dl, poll)
				})
				if err != nil {
					return nil, err
				}
				if ok {
					progress.Printf("latency watermill poll %s: p50 %.2f p99 %.2f ms", poll, pct(lat, 50), pct(lat, 99))
				}
				r50.add(sysPeer, pct(lat, 50))
				r99.add(sysPeer, pct(lat, 99))
			}
		}
		rows = append(rows, r50, r99)
	}
	return rows, nil
}

// addLatencyRun adds a latency run's counters to dl without its latencies:
// the rows above give them per poll interval.
func addLatencyRun(dl *deliveries, s system, ts ...*tally) {
	for _, t := range ts {
		c := t.counts()
		c.p50, c.p99 = math.NaN(), math.NaN()
		dl.addCounts("latency", s, c)
	}
}

// pct is the p-th percentile (nearest rank) of xs.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

type stampKey struct{}

// latencyLib returns the same-process latencies (both consuming buses)
// and the other process's (ms).
func latencyLib(ctx context.Context, t *target, cfg *config, dl *deliveries, poll time.Duration) (local, remote []float64, err error) {
	if err := t.reset(ctx); err != nil {
		return nil, nil, err
	}
	producer, err := newLibBus(t, "orders") // never started, as in the README
	if err != nil {
		return nil, nil, err
	}
	defer producer.close()
	if err := producer.db.Exec(businessDDL()).Error; err != nil {
		return nil, nil, err
	}
	var consumers []*libBus
	for _, name := range []string{"billing", "shipping"} {
		b, err := eventbus.NewEventBus(name, producer.db, libOptions()...)
		if err != nil {
			return nil, nil, err
		}
		consumers = append(consumers, &libBus{EventBus: b, db: producer.db})
	}
	// The stamp hook runs first, right after the commit; the bus's hook
	// (the wake-up) after it.
	stampHook := ddd.WithPostCommitHook(func(ctx context.Context) {
		if at, ok := ctx.Value(stampKey{}).(*time.Time); ok {
			*at = time.Now()
		}
	})
	eng, err := ddd.NewEngine(producer.db, append([]ddd.Option{stampHook}, producer.Options()...)...)
	if err != nil {
		return nil, nil, err
	}
	sched := poisson(int(cfg.latencyDur.Seconds()*float64(cfg.latencyRate)), cfg.latencyRate, latencySeed)
	led := newLedger(len(sched.at), drainSenders)
	la, lb, ra := newTally(led, true), newTally(led, true), newTally(led, true)
	handler := func(tl *tally) ddd.DomainEventHandler {
		return func(_ context.Context, evt *ddd.DomainEvent) error { tl.deliver(evt.ID); return nil }
	}
	for i, tl := range []*tally{la, lb} {
		if err := consumers[i].RegisterEventHandler(handler(tl)); err != nil {
			return nil, nil, err
		}
		defer consumers[i].start(ctx)()
	}
	child, err := spawnWakeChild(ctx, t, cfg, poll, ra)
	if err != nil {
		return nil, nil, err
	}
	defer child.close()
	time.Sleep(500 * time.Millisecond) // the consumers take their leases

	err = steady(ctx, sched, cfg.producers, drainSenders, func(ctx context.Context, i int) error {
		var at time.Time
		led.begin(i, i+1, time.Now())
		err := eng.Run(context.WithValue(ctx, stampKey{}, &at), func(ctx context.Context, uow *ddd.UnitOfWork) error {
			sender := senderOf(i, drainSenders)
			o := newOrder(i, sender)
			if err := insertBusinessRow(uow.Tx(), &o); err != nil {
				return err
			}
			evt, err := ddd.NewDomainEvent(sender, o, ddd.WithEventID(eventID(i)))
			if err != nil {
				return err
			}
			uow.Raise(evt)
			return nil
		})
		if err != nil {
			return err
		}
		led.commit(i, i+1, at)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if err := settle(ctx, latencyGrace(poll), latencyLimit(poll), la, lb, ra); err != nil {
		return nil, nil, err
	}
	addLatencyRun(dl, sysLib, la, lb, ra)
	return append(la.latencies(), lb.latencies()...), ra.latencies(), nil
}

// latencyPeer returns watermill-sql's latencies (ms) at poll interval poll.
func latencyPeer(ctx context.Context, t *target, cfg *config, dl *deliveries, poll time.Duration) (_ []float64, err error) {
	if err := t.reset(ctx); err != nil {
		return nil, err
	}
	if err := wmInit(t); err != nil {
		return nil, err
	}
	db, err := t.openGorm()
	if err != nil {
		return nil, err
	}
	defer closeGorm(db)
	if err := db.Exec(businessDDL()).Error; err != nil {
		return nil, err
	}
	sched := poisson(int(cfg.latencyDur.Seconds()*float64(cfg.latencyRate)), cfg.latencyRate, latencySeed)
	led := newLedger(len(sched.at), drainSenders)
	tl := newTally(led, true)
	cons, err := wmConsume(ctx, t, "latency", 0, poll, func(m *message.Message) { tl.deliver(m.UUID) })
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, cons.close()) }()
	time.Sleep(500 * time.Millisecond)

	err = steady(ctx, sched, cfg.producers, drainSenders, func(ctx context.Context, i int) error {
		msg := wmMessage(i, senderOf(i, drainSenders))
		led.begin(i, i+1, time.Now())
		err := inBusinessTx(ctx, db, i, 1, func(tx *sql.Tx, _ string) error {
			return wmPublishTx(t.kind, tx, msg)
		})
		if err != nil {
			return err
		}
		led.commit(i, i+1, time.Now())
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := settle(ctx, latencyGrace(poll), latencyLimit(poll), tl); err != nil {
		return nil, err
	}
	if err := cons.close(); err != nil {
		return nil, err
	}
	addLatencyRun(dl, sysPeer, tl)
	return tl.latencies(), nil
}
