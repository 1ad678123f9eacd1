package relay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/relay"
)

// TestRelayNATSRestart kills a private nats-server (SIGKILL) while the
// relay publishes and producers commit, and starts it again: every event
// reaches the stream exactly once, in each sender's commit order, and the
// subscriber, riding out the same restart, handles every one.
func TestRelayNATSRestart(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, database *dbtest.Database) {
		srv := privateNATS(t)
		relayThroughOutage(t, database, srv.url(), func() { srv.kill(t) }, func() { srv.start(t) })
	})
}

// TestRelayNetworkCut cuts every connection between the relay and the
// shared nats-server (a proxy closes them and refuses new ones) for a
// while: the same guarantees hold.
func TestRelayNetworkCut(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, database *dbtest.Database) {
		proxy := dbtest.NewProxy(t, strings.TrimPrefix(natsURL(t), "nats://"))
		relayThroughOutage(t, database, "nats://"+proxy.Addr(), proxy.Cut, func() {
			if err := proxy.Restore(); err != nil {
				t.Fatal(err)
			}
		})
	})
}

// relayThroughOutage relays while producers commit, calls down once a
// third of the events reached the stream, up once the relay saw publishes
// fail, and checks the stream and the subscriber at the end.
func relayThroughOutage(t *testing.T, database *dbtest.Database, url string, down, up func()) {
	db := database.Open(t)
	_, js := connect(t, url)
	s := newStream(t, js)
	r, log := runPipeline(t, db, js, s)
	handled := map[string]bool{}

	const senders, perSender = 20, 100
	type outcome struct {
		p   *produced
		err error
	}
	before := make(chan outcome, 1)
	go func() {
		p, err := produceFrom(db, newProducer(t, db), 0, senders, perSender, r.Notify)
		before <- outcome{p, err}
	}()
	waitFor(t, time.Minute, "a third of the events in the stream", func() bool { return s.msgs(t, js) >= senders*perSender/3 })
	failures := r.Stats().Failures
	down()
	// Commit more while NATS is away (other senders), so the relay has
	// something to fail on even if it had caught up.
	during, err := produceFrom(db, newProducer(t, db), senders, 5, 20, r.Notify)
	if err != nil {
		t.Fatalf("produce during the outage: %v", err)
	}
	waitFor(t, time.Minute, "the relay to see publishes fail", func() bool { return r.Stats().Failures > failures })
	up()
	res := <-before
	if res.err != nil {
		t.Fatalf("produce: %v", res.err)
	}
	p := res.p
	p.merge(during)
	total := p.total()
	waitFor(t, 2*time.Minute, "every event in the stream", func() bool { return s.msgs(t, js) >= uint64(total) })
	waitFor(t, time.Minute, "the relay to finish", func() bool { return pending(t, r.Bus()) == 0 })
	checkStream(t, p, s.events(t, js))
	t.Logf("relay: %+v", r.Stats())
	// The subscriber's acks may be lost in the outage: at least once.
	waitFor(t, time.Minute, "the subscriber to handle every event", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		for _, ids := range log.seen {
			for _, id := range ids {
				handled[id] = true
			}
		}
		return len(handled) == total
	})
}

// TestRelayStopDuringOutage stops a relay whose publish keeps failing (NATS
// cut off): Run returns within the bus's ShutdownGrace instead of waiting
// for NATS, nothing of the relay keeps publishing after it, and the next
// run, with NATS back, publishes the event exactly once.
func TestRelayStopDuringOutage(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, database *dbtest.Database) {
		db := database.Open(t)
		proxy := dbtest.NewProxy(t, strings.TrimPrefix(natsURL(t), "nats://"))
		_, js := connect(t, "nats://"+proxy.Addr())
		s := newStream(t, js)
		const grace = 500 * time.Millisecond
		r, err := relay.New(db, js, relay.WithServiceName("relay"), relay.WithSubjectFunc(relay.SubjectFromType(s.prefix)),
			relay.WithPublishTimeout(100*time.Millisecond), relay.WithMaxBackoff(50*time.Millisecond),
			relay.WithBusOptions(busOptions(eventbus.WithShutdownGrace(grace))...), relay.WithLogger(testLogger()))
		if err != nil {
			t.Fatal(err)
		}
		proxy.Cut()
		p, err := produceFrom(db, newProducer(t, db), 0, 1, 1, r.Notify)
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		waitFor(t, time.Minute, "the relay to see its publish fail", func() bool { return r.Stats().Failures > 0 })
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(grace + 20*time.Second): // far above the grace; it never returned before the fix
			t.Fatal("Run did not return while NATS was away")
		}
		// The abandoned publish must not go on: with attempts every 150 ms
		// at most, a loop that outlived Run would count several failures
		// in a second (the absence of an event needs a window of time).
		settled := r.Stats().Failures
		window := time.NewTimer(time.Second)
		<-window.C
		if got := r.Stats().Failures; got > settled+1 {
			t.Fatalf("%d publish failures after Run returned: the publish loop outlived Run", got-settled)
		}
		if err := proxy.Restore(); err != nil {
			t.Fatal(err)
		}
		r2 := newRelay(t, db, js, s, "relay")
		run(t, r2.Run)
		waitFor(t, time.Minute, "the event in the stream", func() bool { return s.msgs(t, js) >= uint64(p.total()) })
		waitFor(t, time.Minute, "the relay to finish", func() bool { return pending(t, r2.Bus()) == 0 })
		checkStream(t, p, s.events(t, js))
	})
}
