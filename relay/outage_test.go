package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dddbus/eventbus/internal/dbtest"
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
