package conformance

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("SetAsideWithoutTimeout", testSetAside)
}

// ShortenSetAside shortens a bus's one-minute set-aside delay (HandlerTimeout
// 0). The test binary sets it from a hook of the eventbus package's tests;
// without it, SetAsideWithoutTimeout skips.
var ShortenSetAside func(b *eventbus.EventBus, d time.Duration)

// testSetAside: with HandlerTimeout 0 a call is never abandoned; one still
// running after the set-aside delay is set aside. Its event waits in the
// retry store, the rest of the batch goes on, its sender gets nothing else
// until it returns, and its result is recorded when it does: a success is
// not run again, a failure is retried.
func testSetAside(t *testing.T, tdb *dbtest.Database) {
	if ShortenSetAside == nil {
		t.Skip("skipping: needs conformance.ShortenSetAside (set by the eventbus package's tests)")
	}
	db := tdb.Open(t)
	bus := newBus(t, db, "aside", eventbus.WithHandlerTimeout(0), eventbus.WithLimitPerRun(10),
		eventbus.WithConsumeConcurrent(4), eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 2}))
	ShortenSetAside(bus, 300*time.Millisecond)
	p := newCallLog()
	must(t, bus.RegisterEventHandler(p.handle))
	s0, f0 := mustEvent(t, "S", 0), mustEvent(t, "F", 0) // S's first call succeeds late, F's fails late
	releaseS, releaseF := p.blockFirstCall(t, s0), p.blockFirstCall(t, f0)
	held := []*ddd.DomainEvent{s0, f0, mustEvent(t, "S", 1), mustEvent(t, "F", 1), mustEvent(t, "S", 2), mustEvent(t, "F", 2)}
	heldIDs := dispatchEvents(t, bus, held...)
	others := othersWave(t, bus, 1, 20)
	start(t, bus)

	waitFor(t, 30*time.Second, "the other senders' events, past the set-aside calls", func() bool { return p.handledAll(others) })
	for _, id := range heldIDs[2:] {
		if n := p.callsOf(id); n != 0 {
			t.Errorf("event %s of a held sender ran %d times while the set-aside call ran", id, n)
		}
	}
	if st := bus.Stats(); st.SetAside != 2 || st.Unreturned != 2 || st.Abandoned != 0 || st.Failed != 0 {
		t.Errorf("stats %+v, want 2 set aside and unreturned, none abandoned or failed", st)
	}

	releaseS(nil)
	releaseF(errors.New("late failure"))
	waitFor(t, 30*time.Second, "the held senders' events", func() bool { return p.handledAll(heldIDs) })
	if n := p.callsOf(s0.ID); n != 1 {
		t.Errorf("the set-aside call that succeeded ran %d times, want 1 (its late success recorded)", n)
	}
	if n := p.callsOf(f0.ID); n != 2 {
		t.Errorf("the set-aside call that failed ran %d times, want 2 (its late failure recorded, then retried)", n)
	}
	if got := fmt.Sprint(p.orderOf("S")); got != "[0 1 2]" {
		t.Errorf("sender S handled in order %s, want [0 1 2]", got)
	}
	if got := fmt.Sprint(laterOrder(p, "F")); got != "[1 2]" {
		t.Errorf("sender F's later events handled in order %s, want [1 2] (and 0 retried on its own)", got)
	}
	p.checkNoOverlap(t)
	waitFor(t, 10*time.Second, "an empty retry store", func() bool { return count(t, db, "SELECT COUNT(*) FROM ddd_retries") == 0 })
	if st := bus.Stats(); st.Unreturned != 0 || st.Handled != int64(len(others)+len(held)) || st.Failed != 1 {
		t.Errorf("stats %+v, want nothing unreturned, every event handled once, 1 failure", st)
	}
}
