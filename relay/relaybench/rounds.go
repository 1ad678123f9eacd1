package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/relay"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gorm.io/gorm"
)

// Placed is the benchmark's event.
type Placed struct {
	OrderID string `json:"order_id"`
	N       int    `json:"n"`
}

// EventType names it: a type of package main has no import path to name it by.
func (Placed) EventType() string { return "relaybench.Placed" }

// fixture is one round's database, stream, relay and database consumer.
type fixture struct {
	c       *config
	db      *database
	prefix  string
	stream  string
	relay   *relay.Relay
	noop    *eventbus.EventBus
	pools   []*gorm.DB
	cleanup []func()
}

func newFixture(ctx context.Context, c *config, handler ddd.DomainEventHandler) (*fixture, error) {
	f := &fixture{c: c}
	var err error
	if f.db, err = newDatabase(c.db, c.dsn); err != nil {
		return nil, err
	}
	f.cleanup = append(f.cleanup, f.db.drop)
	id := randomSuffix()
	f.stream, f.prefix = "RELAYBENCH_"+id, "relaybench"+id
	if _, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: f.stream, Subjects: []string{f.prefix + ".>"}}); err != nil {
		f.close()
		return nil, err
	}
	f.cleanup = append(f.cleanup, func() {
		_ = c.js.DeleteStream(context.Background(), f.stream)
		_ = c.js.DeleteStream(context.Background(), f.stream+"_DEAD")
	})
	// Each on a pool of its own, as separate processes would be; the
	// relay's is pools[0].
	var relayOpts []eventbus.Option
	if c.relayConcurrency > 0 {
		relayOpts = append(relayOpts, eventbus.WithConsumeConcurrent(c.relayConcurrency))
	}
	if c.relayBatch > 0 {
		relayOpts = append(relayOpts, eventbus.WithLimitPerRun(c.relayBatch))
	}
	relayDB, err := f.pool()
	if err == nil {
		f.relay, err = relay.New(relayDB, c.js, relay.WithSubjectFunc(relay.SubjectFromType(f.prefix)),
			relay.WithLogger(c.quiet), relay.WithBusOptions(c.busOptions(relayOpts...)...))
	}
	var noopDB *gorm.DB
	if err == nil {
		noopDB, err = f.pool()
	}
	if err == nil {
		f.noop, err = eventbus.NewEventBus("noop", noopDB, c.busOptions()...)
	}
	if err == nil {
		err = f.noop.RegisterEventHandler(handler)
	}
	if err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

func (f *fixture) pool() (*gorm.DB, error) {
	db, err := f.db.open()
	if err == nil {
		f.pools = append(f.pools, db)
	}
	return db, err
}

func (f *fixture) close() {
	for _, db := range f.pools {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	}
	for i := len(f.cleanup) - 1; i >= 0; i-- {
		f.cleanup[i]()
	}
}

// start runs f in the background; the returned stop cancels it and waits.
func start(ctx context.Context, run func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = run(ctx) }()
	return func() { cancel(); <-done }
}

// backlog commits n events, 500 per transaction, event i sent by sender
// i mod senders, then sequences them with a producer-only bus.
func (f *fixture) backlog(ctx context.Context, n, senders int) error {
	db, err := f.pool()
	if err != nil {
		return err
	}
	producer, err := eventbus.NewEventBus("producer", db, f.c.busOptions()...)
	if err != nil {
		return err
	}
	for i := 0; i < n; {
		var evts []*ddd.DomainEvent
		for ; i < n && len(evts) < 500; i++ {
			sender := fmt.Sprintf("order-%05d", i%senders)
			evt, err := ddd.NewDomainEvent(sender, Placed{OrderID: sender, N: i})
			if err != nil {
				return err
			}
			evts = append(evts, evt)
		}
		if err := db.Transaction(func(tx *gorm.DB) error { return producer.Dispatch(ddd.ContextWithTx(ctx, tx), evts...) }); err != nil {
			return err
		}
	}
	stop := start(ctx, producer.Start)
	defer stop()
	return waitUntil(5*time.Minute, "the backlog to be sequenced", func() bool {
		ss, err := producer.Services(ctx)
		return err == nil && len(ss) > 0 && ss[0].HeadSeq >= int64(n)
	})
}

func waitUntil(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// drainRound drains one backlog with the no-op database consumer and with
// the relay, and returns both rates.
func drainRound(ctx context.Context, c *config, relayFirst bool) (dbRate, relayRate float64, err error) {
	var handled atomic.Int64
	f, err := newFixture(ctx, c, func(context.Context, *ddd.DomainEvent) error { handled.Add(1); return nil })
	if err != nil {
		return 0, 0, err
	}
	defer f.close()
	if err := f.backlog(ctx, c.n, c.senders); err != nil {
		return 0, 0, err
	}
	measure := func(run func(context.Context) error, done func() bool) (float64, error) {
		began := time.Now()
		stop := start(ctx, run)
		defer stop()
		if err := waitUntil(10*time.Minute, "the drain", done); err != nil {
			return 0, err
		}
		return float64(c.n) / time.Since(began).Seconds(), nil
	}
	drainDB := func() (err error) {
		dbRate, err = measure(f.noop.Start, func() bool { return handled.Load() >= int64(c.n) })
		return err
	}
	drainRelay := func() (err error) {
		relayRate, err = measure(f.relay.Run, func() bool { st := f.relay.Stats(); return st.Published+st.Duplicates >= int64(c.n) })
		return err
	}
	steps := []func() error{drainDB, drainRelay}
	if relayFirst {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return 0, 0, err
		}
	}
	return dbRate, relayRate, nil
}

// latencies records when each event reached a handler.
type latencies struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (l *latencies) handle(_ context.Context, evt *ddd.DomainEvent) error {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[evt.ID]; !ok {
		l.seen[evt.ID] = now
	}
	return nil
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// latencyRound commits events one per transaction at c.rate per second
// through the relay's bus (the commit wakes the relay and the database
// consumer), and returns commit-to-handler latencies of a Subscriber and of
// the database consumer.
func latencyRound(ctx context.Context, c *config) (relayLat, dbLat []time.Duration, err error) {
	viaDB := &latencies{seen: map[string]time.Time{}}
	viaNATS := &latencies{seen: map[string]time.Time{}}
	f, err := newFixture(ctx, c, viaDB.handle)
	if err != nil {
		return nil, nil, err
	}
	defer f.close()
	sub, err := relay.NewSubscriber(c.js, f.stream, "bench", viaNATS.handle, relay.WithSubscriberLogger(c.quiet))
	if err != nil {
		return nil, nil, err
	}
	// The engine dispatches through the relay's bus, so on its pool.
	engine, err := ddd.NewEngine(f.pools[0], ddd.WithEventBus(f.relay.Bus()),
		ddd.WithPostCommitHook(func(context.Context) { f.relay.Notify(); f.noop.Notify() }))
	if err != nil {
		return nil, nil, err
	}
	for _, run := range []func(context.Context) error{f.relay.Run, f.noop.Start, sub.Run} {
		defer start(ctx, run)()
	}
	committed := make(map[string]time.Time, c.latencyN)
	tick := time.NewTicker(time.Second / time.Duration(c.rate))
	defer tick.Stop()
	for i := range c.latencyN {
		<-tick.C
		evt, err := ddd.NewDomainEvent(fmt.Sprintf("order-%05d", i%c.senders), Placed{N: i})
		if err != nil {
			return nil, nil, err
		}
		if err := engine.Run(ctx, func(ctx context.Context, uow *ddd.UnitOfWork) error { uow.Raise(evt); return nil }); err != nil {
			return nil, nil, err
		}
		committed[evt.ID] = time.Now()
	}
	if err := waitUntil(5*time.Minute, "every event at both handlers", func() bool {
		return viaDB.count() >= c.latencyN && viaNATS.count() >= c.latencyN
	}); err != nil {
		return nil, nil, err
	}
	for id, at := range committed {
		relayLat = append(relayLat, max(viaNATS.seen[id].Sub(at), 0))
		dbLat = append(dbLat, max(viaDB.seen[id].Sub(at), 0))
	}
	return relayLat, dbLat, nil
}

// rawRates publishes n messages like the relay's (an encoded event each,
// with its id as Nats-Msg-Id) straight to a stream of their own, without
// the database: on concurrency goroutines each waiting for its ack (the
// relay's way), and pipelined (PublishMsgAsync, all in flight, then every
// ack awaited: what a relay handed whole batches could do).
func rawRates(ctx context.Context, c *config, concurrency int) (waiting, pipelined float64, err error) {
	id := randomSuffix()
	stream, prefix := "RELAYBENCH_RAW_"+id, "relaybenchraw"+id
	if _, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"}}); err != nil {
		return 0, 0, err
	}
	defer func() { _ = c.js.DeleteStream(context.Background(), stream) }()
	msgs := make([]*nats.Msg, 2*c.n)
	for i := range msgs {
		sender := fmt.Sprintf("order-%05d", i%c.senders)
		evt, err := ddd.NewDomainEvent(sender, Placed{OrderID: sender, N: i})
		if err == nil {
			msgs[i], err = relay.Encode(prefix+".Placed", evt)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	began := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	for range concurrency {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(c.n); i = next.Add(1) - 1 {
				if _, err := c.js.PublishMsg(ctx, msgs[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	waiting = float64(c.n) / time.Since(began).Seconds()
	began = time.Now()
	futures := make([]jetstream.PubAckFuture, 0, c.n)
	for _, m := range msgs[c.n:] {
		f, err := c.js.PublishMsgAsync(m)
		if err != nil {
			return 0, 0, err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return 0, 0, err
		}
	}
	return waiting, float64(c.n) / time.Since(began).Seconds(), nil
}
