package conformance

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("DatabaseGoesAwayAndComesBack", testDatabaseGoesAway)
}

// testDatabaseGoesAway: the consumer reaches the server through a proxy
// that is cut twice (open connections closed, new ones refused) while a
// producer on a direct pool keeps dispatching. The bus logs, backs off and
// resumes by itself; every event is counted.
func testDatabaseGoesAway(t *testing.T, tdb *dbtest.Database) {
	if tdb.Addr == "" {
		t.Skip("SQLite is embedded: its database cannot go away under the bus")
	}
	const (
		total = 600
		limit = 50
	)
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	proxy := dbtest.NewProxy(t, tdb.Addr)
	sink := newLogSink()
	bus := newBus(t, tdb.OpenVia(t, proxy.Addr()), "resilient", eventbus.WithLimitPerRun(limit), eventbus.WithLogger(sink.logger()))
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	start(t, bus)

	var mu sync.Mutex
	var sent []string
	nSent := func() int { mu.Lock(); defer mu.Unlock(); return len(sent) }
	produced := make(chan error, 1)
	go func() {
		tick := time.NewTicker(2 * time.Millisecond) // pacing, so the outages fall mid-stream
		defer tick.Stop()
		for i := range total {
			<-tick.C
			evt, err := ddd.NewDomainEvent(senderName(i%7), OrderPlaced{OrderID: senderName(i % 7), N: i})
			if err == nil {
				err = producer.Dispatch(context.Background(), evt)
			}
			if err != nil {
				produced <- fmt.Errorf("dispatch %d: %w", i, err)
				return
			}
			mu.Lock()
			sent = append(sent, evt.ID)
			mu.Unlock()
		}
		produced <- nil
	}()

	for outage := 1; outage <= 2; outage++ {
		waitFor(t, 20*time.Second, "deliveries before the outage", func() bool { return rec.distinct() >= outage*total/4 })
		proxy.Cut()
		waitFor(t, 20*time.Second, "the bus to report the failure", func() bool { return sink.count("poll failed") >= 2*outage })
		// Events pile up while the database is away from the consumer.
		mark := nSent()
		waitFor(t, 20*time.Second, "events produced during the outage", func() bool { return nSent() >= min(mark+50, total) })
		must(t, proxy.Restore())
	}
	select {
	case err := <-produced:
		must(t, err)
	case <-time.After(60 * time.Second):
		t.Fatal("the producer did not finish")
	}
	waitFor(t, 60*time.Second, "the bus to catch up after the outages", func() bool { return atHead(t, db, "resilient") })
	dups := rec.checkAtLeastOnce(t, sent)
	t.Logf("%s: %d events, %d delivered twice (commits cut mid-flight), %d failed polls logged",
		tdb.Dialect, len(sent), dups, sink.count("poll failed"))
	if dups > 2*limit {
		t.Errorf("%d events redelivered, more than one batch per outage (%d)", dups, 2*limit)
	}
}
