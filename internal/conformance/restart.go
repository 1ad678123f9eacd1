package conformance

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// ServerRestart runs a producer and a consumer on a private server, stops
// the server cleanly once and crashes it once while they run, and counts
// every event: each one whose Dispatch succeeded is delivered, in per-sender
// order, and at most one batch per outage twice. An event whose Dispatch
// failed during an outage may or may not have committed; it may be
// delivered, once.
//
// It is not registered in the suite: it needs a server of its own
// (dbtest.PrivatePostgres, dbtest.PrivateMariaDB) and runs in a CI step of
// its own.
func ServerRestart(t *testing.T, srv *dbtest.Server) {
	const (
		target = 600 // events confirmed by Dispatch
		limit  = 50
	)
	tdb := srv.NewDatabase(t)
	db := tdb.Open(t)
	producerSink := newLogSink()
	producer := newBus(t, db, "producer", eventbus.WithLogger(producerSink.logger()))
	sink := newLogSink()
	consumer := newBus(t, tdb.Open(t), "survivor", eventbus.WithLimitPerRun(limit), eventbus.WithLogger(sink.logger()))
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(rec.handle))
	start(t, consumer)

	var (
		mu        sync.Mutex
		confirmed []string
		unknown   = map[string]bool{}
		failures  atomic.Int64
	)
	nConfirmed := func() int { mu.Lock(); defer mu.Unlock(); return len(confirmed) }
	produced := make(chan struct{})
	stopProducing := make(chan struct{})
	go func() {
		defer close(produced)
		tick := time.NewTicker(3 * time.Millisecond) // pacing, so the outages fall mid-stream
		defer tick.Stop()
		for i := 0; nConfirmed() < target; i++ {
			select {
			case <-stopProducing:
				return
			case <-tick.C:
			}
			sender := senderName(i % 7)
			evt, err := ddd.NewDomainEvent(sender, OrderPlaced{OrderID: sender, N: i})
			if err != nil {
				t.Errorf("new event: %v", err)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = producer.Dispatch(ctx, evt)
			cancel()
			mu.Lock()
			if err != nil {
				unknown[evt.ID] = true
			} else {
				confirmed = append(confirmed, evt.ID)
			}
			mu.Unlock()
			if err != nil {
				failures.Add(1)
				time.Sleep(50 * time.Millisecond) // the server is away: do not spin
			}
		}
	}()
	defer func() { close(stopProducing); <-produced }()

	outages := []struct {
		name string
		stop func(testing.TB)
	}{
		{"clean stop", srv.Stop},
		{"crash", srv.Crash},
	}
	for i, o := range outages {
		waitFor(t, 60*time.Second, "deliveries before the "+o.name, func() bool { return rec.distinct() >= (i+1)*target/4 })
		failedPolls, failedDispatches := sink.count("poll failed"), failures.Load()
		o.stop(t)
		// Both sides see the server gone before it comes back.
		waitFor(t, 60*time.Second, "the consumer to report the outage", func() bool { return sink.count("poll failed") > failedPolls })
		waitFor(t, 60*time.Second, "a dispatch to fail", func() bool { return failures.Load() > failedDispatches })
		srv.Start(t)
		t.Logf("%s: %s and restart done; %d events delivered so far", srv.Dialect, o.name, rec.distinct())
	}
	select {
	case <-produced:
	case <-time.After(90 * time.Second):
		t.Fatal("the producer did not finish")
	}
	waitFor(t, 60*time.Second, "the consumer to catch up after the restarts", func() bool { return atHead(t, db, "survivor") })

	mu.Lock()
	defer mu.Unlock()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	dups, want := rec.checkOnceOrTwiceLocked(t, confirmed)
	lostUnknown := 0
	for id, c := range rec.count {
		switch {
		case want[id]:
		case !unknown[id]:
			t.Errorf("event %s delivered but never dispatched", id)
		case c > 1:
			t.Errorf("event %s (dispatch failed) delivered %d times", id, c)
		}
	}
	for id := range unknown {
		if rec.count[id] == 0 {
			lostUnknown++
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events"); n < int64(len(confirmed)) {
		t.Errorf("%d events stored, fewer than the %d confirmed", n, len(confirmed))
	}
	t.Logf("%s: %d events confirmed and delivered; %d dispatches failed during outages (%d of them never committed); %d delivered twice; %d failed polls logged",
		srv.Dialect, len(confirmed), len(unknown), lostUnknown, dups, sink.count("poll failed"))
	if dups > len(outages)*limit {
		t.Errorf("%d events redelivered, more than one batch per outage (%d)", dups, len(outages)*limit)
	}
	rec.checkFirstDeliveryOrderLocked(t)
}
