package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// Several instances of one service, each on a pool of its own as separate
// processes would be: one consumes at a time (the lease owner), a dead or
// stalled one is replaced, and a stalled one that wakes up is fenced off.
func init() {
	register("InstancesShareOneService", testInstancesShare)
	register("InstanceKilledMidBatch", testInstanceKilled)
	register("InstanceStalledPastLease", testInstanceStalled)
}

// instanceOptions: a short lease so takeovers happen within a test, one
// worker so a batch runs in a known order.
func instanceOptions(limit int, extra ...eventbus.Option) []eventbus.Option {
	return append([]eventbus.Option{
		eventbus.WithLeaseDuration(1500 * time.Millisecond),
		eventbus.WithLimitPerRun(limit),
		eventbus.WithConsumeConcurrent(1),
	}, extra...)
}

func decodeN(t testing.TB, evt *ddd.DomainEvent) int {
	var p OrderPlaced
	if err := evt.Decode(&p); err != nil {
		t.Errorf("decode %s: %v", evt.ID, err)
	}
	return p.N
}

func testInstancesShare(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	all := newRecorder() // shared by the instances: catches any event or sender handled twice at once
	type inst struct {
		bus  *eventbus.EventBus
		log  *logSink
		stop func()
	}
	var insts []*inst
	for range 3 {
		sink := newLogSink()
		// A long lease: no takeover is expected here (a graceful stop hands
		// over at once), so a slow renewal under load must not cause one.
		bus := newBus(t, tdb.Open(t), "shared", eventbus.WithConsumeConcurrent(4), eventbus.WithLimitPerRun(50),
			eventbus.WithLeaseDuration(10*time.Second), eventbus.WithLogger(sink.logger()))
		must(t, bus.RegisterEventHandler(all.handle))
		insts = append(insts, &inst{bus: bus, log: sink, stop: start(t, bus)})
	}
	send := func(round, n int) []string {
		var ids []string
		for i := range n {
			evt := mustEvent(t, senderName(i%10), round*1000+i)
			must(t, producer.Dispatch(context.Background(), evt))
			ids = append(ids, evt.ID)
		}
		return ids
	}
	var ids []string
	live := insts
	for round := range 3 {
		before := make([]int64, len(live))
		for i, in := range live {
			before[i] = in.bus.Stats().Handled
		}
		ids = append(ids, send(round, 150)...)
		waitFor(t, 20*time.Second, fmt.Sprintf("round %d delivered", round), func() bool { return all.distinct() == len(ids) })
		// One instance, the lease owner, handled the whole round.
		var owner *inst
		for i, in := range live {
			if in.bus.Stats().Handled > before[i] {
				if owner != nil {
					t.Fatalf("round %d: two live instances handled events", round)
				}
				owner = in
			}
		}
		if owner == nil {
			t.Fatalf("round %d: no instance handled events", round)
		}
		name := owner.log.attr("consuming", "owner")
		st, err := producer.Services(context.Background())
		must(t, err)
		for _, s := range st {
			if s.Name == "shared" && s.Owner != name {
				t.Fatalf("round %d: lease owner %q, but %q handled the events", round, s.Owner, name)
			}
		}
		// Graceful stop hands the service over: the next round goes to
		// another instance at once, without waiting for the lease to lapse.
		owner.stop()
		var rest []*inst
		for _, in := range live {
			if in != owner {
				rest = append(rest, in)
			}
		}
		live = rest
		if len(live) == 0 {
			break
		}
	}
	all.checkExactlyOnce(t, ids)
}

// openKillable opens a pool and returns a kill that leaves it unable to
// reach the database: a cut proxy on a server, a closed pool on SQLite.
func openKillable(t testing.TB, tdb *dbtest.Database) (*gorm.DB, func()) {
	if tdb.Addr == "" {
		db := tdb.Open(t)
		sqlDB, err := db.DB()
		must(t, err)
		return db, func() { _ = sqlDB.Close() }
	}
	p := dbtest.NewProxy(t, tdb.Addr)
	return tdb.OpenVia(t, p.Addr()), p.Cut
}

// testInstanceKilled: the owner dies in the middle of a batch (its
// connections are cut, or its pool closed, so it can neither commit nor
// renew). A standby takes over once the lease lapses and redelivers at most
// that unfinished batch; nothing is lost.
func testInstanceKilled(t *testing.T, tdb *dbtest.Database) {
	const limit = 20
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	ids := dispatchN(t, producer, "k", 0, 3*limit)

	dbA, kill := openKillable(t, tdb)
	busA := newBus(t, dbA, "victim", instanceOptions(limit)...)
	recA := newRecorder()
	var dead atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	must(t, busA.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		if dead.Load() {
			<-release // a dead process runs nothing
			return errors.New("dead")
		}
		if decodeN(t, evt) == limit+limit/4 { // in the second batch
			close(entered)
			<-release
			return errors.New("dead")
		}
		return recA.handle(ctx, evt)
	}))
	start(t, busA)
	t.Cleanup(func() { close(release) }) // before busA stops
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("instance A never reached the second batch")
	}
	dead.Store(true)
	kill()

	recB := newRecorder()
	busB := newBus(t, tdb.Open(t), "victim", instanceOptions(limit)...)
	must(t, busB.RegisterEventHandler(recB.handle))
	start(t, busB)
	waitFor(t, 20*time.Second, "the standby to deliver the rest", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_services s, ddd_sequencer q WHERE s.name = 'victim' AND s.consumed_seq = q.last_seq") == 1
	})

	recA.mu.Lock()
	recB.mu.Lock()
	dups := 0
	for _, id := range ids {
		a, b := recA.count[id], recB.count[id]
		switch {
		case a+b == 0:
			t.Errorf("event %s lost", id)
		case a > 1 || b > 1:
			t.Errorf("event %s delivered %d times by A and %d by B", id, a, b)
		case a == 1 && b == 1:
			dups++
		}
	}
	handledA := len(recA.count)
	recA.checkOrderLocked(t)
	recB.checkOrderLocked(t)
	recB.mu.Unlock()
	recA.mu.Unlock()
	t.Logf("%s: A handled %d before it died, B redelivered %d of them (bound: LimitPerRun %d)", tdb.Dialect, handledA, dups, limit)
	if dups > limit {
		t.Errorf("%d events redelivered, more than one batch (%d)", dups, limit)
	}
	if handledA < limit {
		t.Errorf("A handled %d events, want at least its first batch of %d", handledA, limit)
	}
}

// testInstanceStalled: the owner's connection stalls (a frozen process, a
// network black hole) while a handler runs. Its lease lapses and a standby
// takes over. When the owner wakes up it must start no further event of its
// old batch, its commit must be refused (fencing), and the stored offset
// must never move backwards.
func testInstanceStalled(t *testing.T, tdb *dbtest.Database) {
	if tdb.Addr == "" {
		t.Skip("SQLite is embedded: there is no connection to stall")
	}
	const limit = 20
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	ids := dispatchN(t, producer, "s", 0, 10)

	proxy := dbtest.NewProxy(t, tdb.Addr)
	logA := newLogSink()
	busA := newBus(t, tdb.OpenVia(t, proxy.Addr()), "stall", instanceOptions(limit, eventbus.WithLogger(logA.logger()))...)
	recA := newRecorder()
	var stalled atomic.Bool
	var startedAfterStall atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	must(t, busA.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		if stalled.Load() {
			startedAfterStall.Add(1)
		}
		if decodeN(t, evt) == 2 && !stalled.Load() {
			close(entered)
			<-release
		}
		return recA.handle(ctx, evt)
	}))
	start(t, busA)
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }); proxy.Resume() })
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("instance A never handled its third event")
	}
	stalled.Store(true)
	proxy.Pause()
	ownerA := logA.attr("consuming", "owner")

	// Sample the stored offset for the rest of the test: it must never
	// move backwards.
	var samples, decreases atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		sqlDB, _ := db.DB()
		last := int64(-1)
		for sampleCtx.Err() == nil {
			var v int64
			if err := sqlDB.QueryRowContext(sampleCtx, "SELECT consumed_seq FROM ddd_services WHERE name = 'stall'").Scan(&v); err == nil {
				samples.Add(1)
				if v < last {
					decreases.Add(1)
				}
				last = v
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() { stopSampling(); <-sampled }()

	logB := newLogSink()
	busB := newBus(t, tdb.Open(t), "stall", instanceOptions(limit, eventbus.WithLogger(logB.logger()))...)
	recB := newRecorder()
	must(t, busB.RegisterEventHandler(recB.handle))
	start(t, busB)
	waitFor(t, 20*time.Second, "the standby to take over and redo the batch", func() bool { return recB.distinct() == len(ids) })
	ids = append(ids, dispatchN(t, producer, "s", 10, 10)...)
	waitFor(t, 20*time.Second, "the new owner's progress", func() bool { return recB.distinct() == len(ids) && atHead(t, db, "stall") })
	progress := consumedSeq(t, db, "stall")

	// A's handler returns while A is still cut off: A cannot tell whether it
	// still owns the lease, so it must not start the rest of its batch.
	releaseOnce.Do(func() { close(release) })
	proxy.Resume()
	waitFor(t, 20*time.Second, "the stalled instance's commit to be refused", func() bool { return logA.count("lease lost") > 0 })
	if n := startedAfterStall.Load(); n != 0 {
		t.Errorf("the stalled instance started %d more events after its lease lapsed", n)
	}
	if got := consumedSeq(t, db, "stall"); got < progress {
		t.Errorf("offset went back from %d to %d after the stalled instance woke up", progress, got)
	}

	// The new owner keeps the service and goes on.
	ids = append(ids, dispatchN(t, producer, "s", 20, 10)...)
	waitFor(t, 20*time.Second, "delivery after the wake-up", func() bool { return recB.distinct() == len(ids) && atHead(t, db, "stall") })
	st, err := producer.Services(context.Background())
	must(t, err)
	ownerB := logB.attr("consuming", "owner")
	for _, s := range st {
		if s.Name == "stall" && (s.Owner != ownerB || s.Owner == ownerA) {
			t.Errorf("lease owner %q, want the new owner %q (stalled one: %q)", s.Owner, ownerB, ownerA)
		}
	}
	recB.checkExactlyOnce(t, ids)
	if n := recA.distinct(); n != 3 {
		t.Errorf("the stalled instance handled %d events, want the 3 it started before stalling", n)
	}
	stopSampling()
	<-sampled
	if samples.Load() == 0 || decreases.Load() != 0 {
		t.Errorf("offset samples: %d, decreases: %d", samples.Load(), decreases.Load())
	}
}
