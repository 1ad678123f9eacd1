package conformance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("NoCallStartsAfterCancel", testNoCallStartsAfterCancel)
}

// testNoCallStartsAfterCancel (issue 9, item 17): Start's context is
// cancelled while a batch of 300 events runs; no handler call may start
// after cancel returned, and the next owner delivers every event the first
// one did not start.
//
// The cancel comes from inside a handler call, so that "after" is exact:
// every call that sees the flag set at its entry was started after cancel
// returned. With one worker, the calls are sequential: the cancel lands at
// a random call of the batch. With eight, the calls from a random one on
// wait at a gate until all eight workers are inside a call; the last to
// arrive cancels and opens the gate, so no worker can be between the bus's
// check and its handler's entry when the cancel happens.
//
// EVENTBUS_TEST_TRIALS sets the trials per variant (default 15).
func testNoCallStartsAfterCancel(t *testing.T, tdb *dbtest.Database) {
	const (
		events  = 300
		senders = 30
	)
	trials := 15
	if v, err := strconv.Atoi(os.Getenv("EVENTBUS_TEST_TRIALS")); err == nil && v > 0 {
		trials = v
	}
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	var evts []*ddd.DomainEvent
	for i := range events {
		evts = append(evts, mustEvent(t, senderName(i%senders), i))
	}
	all := dispatchEvents(t, producer, evts...)

	lateCalls, lateTrials := 0, 0
	for trial := range 2 * trials {
		workers := 1
		if trial%2 == 1 {
			workers = 8
		}
		// A subtest per trial, so that its pools close when it ends.
		t.Run(fmt.Sprintf("trial-%d-workers-%d", trial, workers), func(t *testing.T) {
			service := fmt.Sprintf("cut-%d", trial)
			late, started := cancelMidBatch(t, tdb, service, workers, events)
			if late > 0 {
				lateCalls += late
				lateTrials++
			}
			// The next owner delivers every event the first one did not start.
			rec := newRecorder()
			next := newBus(t, tdb.Open(t), service, eventbus.WithLimitPerRun(events))
			must(t, next.RegisterEventHandler(rec.handle))
			stop := start(t, next)
			waitFor(t, 30*time.Second, "the next owner to reach the head", func() bool { return atHead(t, db, service) })
			stop()
			for _, id := range all {
				if !started[id] && !rec.count1(id) {
					t.Errorf("event %s was neither started before the stop nor delivered by the next owner", id)
				}
			}
		})
	}
	t.Logf("%s: %d trials (1 and 8 workers): %d handler calls started after cancel, in %d trials", tdb.Dialect, 2*trials, lateCalls, lateTrials)
	if lateCalls > 0 {
		t.Errorf("%d handler calls started after cancel returned, in %d of %d trials", lateCalls, lateTrials, 2*trials)
	}
}

// cancelMidBatch runs service with workers from the start of the log,
// cancels Start's context in the middle of its first batch and waits for
// Start to return. It returns how many calls started after the cancel, and
// the events whose calls started.
func cancelMidBatch(t *testing.T, tdb *dbtest.Database, service string, workers, events int) (int, map[string]bool) {
	bus := newBus(t, tdb.Open(t), service, eventbus.WithLimitPerRun(events), eventbus.WithConsumeConcurrent(workers))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu        sync.Mutex
		started   = map[string]bool{}
		calls     atomic.Int64
		inside    atomic.Int64
		late      atomic.Int64
		cancelled atomic.Bool
		gate      = make(chan struct{})
	)
	// Sequential: the cancel comes at call k. Parallel: calls from k on wait
	// at the gate; k leaves room for all workers to be busy.
	k := 1 + rand.Int64N(int64(events)*3/4)
	if workers > 1 {
		k = 1 + rand.Int64N(int64(events)/3)
	}
	stop := func() {
		cancel()
		cancelled.Store(true)
	}
	must(t, bus.RegisterEventHandler(func(_ context.Context, evt *ddd.DomainEvent) error {
		if cancelled.Load() {
			late.Add(1)
		}
		mu.Lock()
		started[evt.ID] = true
		mu.Unlock()
		n := calls.Add(1)
		switch {
		case workers == 1 && n == k:
			stop()
		case workers > 1 && n >= k:
			if inside.Add(1) == int64(workers) {
				stop()
				close(gate)
			}
			<-gate
		}
		return nil
	}))
	done := make(chan error, 1)
	go func() { done <- bus.Start(ctx) }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: Start did not return within 60s (cancelled: %t, calls: %d)", service, cancelled.Load(), calls.Load())
	}
	if !cancelled.Load() {
		t.Fatalf("%s: the batch ended before the cancel (%d calls)", service, calls.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	return int(late.Load()), started
}
