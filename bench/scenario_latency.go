package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
)

// Scenario 3, latency: cfg.producers producers together commit
// cfg.latencyRate business transactions per second (Poisson arrivals, see
// steady), one event each, for cfg.latencyDur. Latency runs from the
// moment the commit returns to the handler call.
//
// eventbus: the engine's bus consumes in the same process and is woken by
// the engine's post-commit hook ("same process"); a second bus instance of
// another service, on a pool of its own, only polls every P ("other
// instance"). watermill-sql: a subscriber polling every P (its default
// batch), the producer publishing in the business transaction.

func runLatency(ctx context.Context, t *target, cfg *config) ([]*row, error) {
	local50 := newRow("Latency, same process (engine wake-up), p50", "ms", -1)
	local99 := newRow("Latency, same process (engine wake-up), p99", "ms", -1)
	lost := newRow("Latency runs: events lost (not handled within the deadline)", "events", -1)
	rows := []*row{local50, local99}
	systems := []system{sysLib, sysPeer}
	if !t.hasPeer() {
		systems = []system{sysLib}
	}
	for i, poll := range cfg.pollIntervals {
		r50 := newRow(fmt.Sprintf("Latency, other instance polling every %s, p50", poll), "ms", -1)
		r99 := newRow(fmt.Sprintf("Latency, other instance polling every %s, p99", poll), "ms", -1)
		for _, s := range order(i, systems...) {
			switch s {
			case sysLib:
				local, remote, err := latencyLib(ctx, t, cfg, poll)
				if err != nil {
					return nil, fmt.Errorf("eventbus, poll %s: %w", poll, err)
				}
				progress.Printf("latency eventbus poll %s: local p50 %.2f p99 %.2f; remote p50 %.2f p99 %.2f ms",
					poll, pct(local, 50), pct(local, 99), pct(remote, 50), pct(remote, 99))
				local50.add(sysLib, pct(local, 50))
				local99.add(sysLib, pct(local, 99))
				r50.add(sysLib, pct(remote, 50))
				r99.add(sysLib, pct(remote, 99))
				lost.add(sysLib, 0) // a loss by eventbus fails the run above
			case sysPeer:
				lat, n, err := latencyPeer(ctx, t, cfg, poll)
				if err != nil {
					return nil, fmt.Errorf("watermill, poll %s: %w", poll, err)
				}
				progress.Printf("latency watermill poll %s: p50 %.2f p99 %.2f ms, %d lost", poll, pct(lat, 50), pct(lat, 99), n)
				r50.add(sysPeer, pct(lat, 50))
				r99.add(sysPeer, pct(lat, 99))
				lost.add(sysPeer, float64(n))
			}
		}
		rows = append(rows, r50, r99)
	}
	if t.hasPeer() {
		rows = append(rows, lost)
	}
	return rows, nil
}

// arrivals records when each event (by ID) was committed and handled.
type arrivals struct {
	mu        sync.Mutex
	committed map[string]time.Time
	handled   map[string]time.Time
}

func newArrivals() *arrivals {
	return &arrivals{committed: map[string]time.Time{}, handled: map[string]time.Time{}}
}

func (a *arrivals) commit(id string, at time.Time) {
	a.mu.Lock()
	a.committed[id] = at
	a.mu.Unlock()
}

func (a *arrivals) handle(id string) {
	at := time.Now()
	a.mu.Lock()
	if _, dup := a.handled[id]; !dup {
		a.handled[id] = at
	}
	a.mu.Unlock()
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.handled)
}

// latencies returns commit-to-handler times in milliseconds.
func (a *arrivals) latencies() []float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]float64, 0, len(a.committed))
	for id, c := range a.committed {
		if h, ok := a.handled[id]; ok {
			out = append(out, float64(h.Sub(c))/float64(time.Millisecond))
		}
	}
	return out
}

// shortfall is the error of a consumer that handled fewer events than were
// committed before the deadline: for eventbus a failure, for a peer a
// result (the events it lost).
type shortfall struct {
	got, want int
	after     time.Duration
}

func (e *shortfall) Error() string {
	return fmt.Sprintf("only %d of %d events handled after %s", e.got, e.want, e.after)
}

// waitAll waits until every committed event was handled by each of as; it
// returns a *shortfall at the deadline.
func waitAll(ctx context.Context, want int, timeout time.Duration, as ...*arrivals) error {
	deadline := time.Now().Add(timeout)
	for _, a := range as {
		for a.count() < want {
			if time.Now().After(deadline) {
				return &shortfall{got: a.count(), want: want, after: timeout}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
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

// steady calls fn(i) on cfg.producers goroutines at cfg.latencyRate calls
// per second on average, for cfg.latencyDur, and returns the number of
// calls. The start times form a Poisson process (exponential gaps) drawn
// from a fixed seed: every contestant gets the same schedule, and no
// poller can fall into step with evenly spaced commits (which would make
// its latency depend on an arbitrary phase instead of averaging over it).
func steady(ctx context.Context, cfg *config, fn func(ctx context.Context, i int) error) (int, error) {
	total := int(cfg.latencyDur.Seconds() * float64(cfg.latencyRate))
	rng := rand.New(rand.NewPCG(20, 26))
	at := make([]time.Duration, total)
	var next time.Duration
	for i := range at {
		at[i] = next
		next += time.Duration(rng.ExpFloat64() / float64(cfg.latencyRate) * float64(time.Second))
	}
	begin := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, cfg.producers)
	for p := range cfg.producers {
		wg.Go(func() {
			for i := p; i < total; i += cfg.producers {
				if d := time.Until(begin.Add(at[i])); d > 0 {
					time.Sleep(d)
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
	return total, <-errs
}

type stampKey struct{}

// latencyLib returns the same-process and other-instance latencies (ms).
func latencyLib(ctx context.Context, t *target, cfg *config, poll time.Duration) (local, remote []float64, err error) {
	if err := t.reset(ctx); err != nil {
		return nil, nil, err
	}
	localBus, err := newLibBus(t, "local")
	if err != nil {
		return nil, nil, err
	}
	defer localBus.close()
	remoteBus, err := newLibBus(t, "remote", eventbus.WithRunInterval(poll))
	if err != nil {
		return nil, nil, err
	}
	defer remoteBus.close()
	if err := localBus.db.Exec(businessDDL()).Error; err != nil {
		return nil, nil, err
	}
	// The stamp hook runs first, right after the commit; the bus's hook
	// (the wake-up) after it.
	stampHook := ddd.WithPostCommitHook(func(ctx context.Context) {
		if at, ok := ctx.Value(stampKey{}).(*time.Time); ok {
			*at = time.Now()
		}
	})
	eng, err := ddd.NewEngine(localBus.db, append([]ddd.Option{stampHook}, localBus.Options()...)...)
	if err != nil {
		return nil, nil, err
	}
	la, ra := newArrivals(), newArrivals()
	handler := func(a *arrivals) ddd.DomainEventHandler {
		return func(_ context.Context, evt *ddd.DomainEvent) error { a.handle(evt.ID); return nil }
	}
	if err := localBus.RegisterEventHandler(handler(la)); err != nil {
		return nil, nil, err
	}
	if err := remoteBus.RegisterEventHandler(handler(ra)); err != nil {
		return nil, nil, err
	}
	defer localBus.start(ctx)()
	defer remoteBus.start(ctx)()
	time.Sleep(500 * time.Millisecond) // both take their lease

	total, err := steady(ctx, cfg, func(ctx context.Context, i int) error {
		var at time.Time
		var id string
		err := eng.Run(context.WithValue(ctx, stampKey{}, &at), func(ctx context.Context, uow *ddd.UnitOfWork) error {
			sender := senderOf(i, drainSenders)
			o := newOrder(i, sender)
			if err := insertBusinessRow(uow.Tx(), &o); err != nil {
				return err
			}
			evt, err := ddd.NewDomainEvent(sender, o)
			if err != nil {
				return err
			}
			id = evt.ID
			uow.Raise(evt)
			return nil
		})
		if err != nil {
			return err
		}
		la.commit(id, at)
		ra.commit(id, at)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if err := waitAll(ctx, total, 3*poll+30*time.Second, la, ra); err != nil {
		return nil, nil, err
	}
	return la.latencies(), ra.latencies(), nil
}

// latencyPeer returns watermill-sql's latencies (ms) at poll interval poll
// and the number of events it did not handle before the deadline.
func latencyPeer(ctx context.Context, t *target, cfg *config, poll time.Duration) (_ []float64, lost int, err error) {
	if err := t.reset(ctx); err != nil {
		return nil, 0, err
	}
	if err := wmInit(t); err != nil {
		return nil, 0, err
	}
	db, err := t.openGorm()
	if err != nil {
		return nil, 0, err
	}
	defer closeGorm(db)
	if err := db.Exec(businessDDL()).Error; err != nil {
		return nil, 0, err
	}
	a := newArrivals()
	cons, err := wmConsume(ctx, t, "latency", 0, poll, func(m *message.Message) { a.handle(m.UUID) })
	if err != nil {
		return nil, 0, err
	}
	defer cons.close()
	time.Sleep(500 * time.Millisecond)

	total, err := steady(ctx, cfg, func(ctx context.Context, i int) error {
		msg := wmMessage(i, senderOf(i, drainSenders))
		err := inBusinessTx(ctx, db, i, 1, func(tx *sql.Tx, _ string) error {
			return wmPublishTx(t.kind, tx, msg)
		})
		if err != nil {
			return err
		}
		a.commit(msg.UUID, time.Now())
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if err := waitAll(ctx, total, 3*poll+30*time.Second, a); err != nil {
		var sf *shortfall
		if !errors.As(err, &sf) {
			return nil, 0, err
		}
		lost = sf.want - sf.got
	}
	return a.latencies(), lost, nil
}
