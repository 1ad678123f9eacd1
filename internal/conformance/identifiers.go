package conformance

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("IdentifiersCompareByteForByte", testIdentifiersExact)
}

// Senders, event ids and service names are compared byte for byte: a
// collation that ignores trailing spaces (MySQL's PAD SPACE) or case must
// not make "acct " wait behind "acct", nor let a replay of "X" touch "X ".
func testIdentifiersExact(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	ctx := context.Background()
	fifo := ddd.WithSendType(ddd.SendFIFO)

	// FIFO: the head of sender "acct" keeps failing and parks its sender;
	// senders that differ from it only by a trailing space or by case are
	// other senders. Their own first events fail once, so that their
	// retries (and the events parked behind them) are looked up in the
	// retry store beside the head of "acct".
	bus := newBus(t, db, "exact", eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 1 << 20, Interval: 20 * time.Millisecond}))
	rec := newRecorder()
	head := mustEvent(t, "acct", 0, fifo)
	var failedOnce sync.Map
	rec.fail = func(evt *ddd.DomainEvent) error {
		if evt.ID == head.ID {
			return errors.New("downstream unavailable")
		}
		if _, again := failedOnce.LoadOrStore(evt.Sender, true); !again {
			return errors.New("fails once")
		}
		return nil
	}
	must(t, bus.RegisterEventHandler(rec.handle))
	must(t, bus.Dispatch(ctx, head))
	start(t, bus)
	waitFor(t, 10*time.Second, "the head of acct in the retry store", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_retries WHERE state = 0") == 1
	})
	var others []*ddd.DomainEvent
	for i, sender := range []string{"acct ", "ACCT", "acct  "} {
		others = append(others, mustEvent(t, sender, 2*i+1, fifo), mustEvent(t, sender, 2*i+2, fifo))
	}
	must(t, bus.Dispatch(ctx, others...))
	waitFor(t, 10*time.Second, "the other senders' FIFO events", func() bool {
		for _, e := range others {
			if !rec.count1(e.ID) {
				return false
			}
		}
		return true
	})

	// Dead letters: ids that differ by a trailing space or by case are
	// replayed and discarded one by one.
	// (Tables of their own: this service starts from the earliest event.)
	dead := newBus(t, db, "exact-dead", eventbus.WithTablePrefix("dl_"),
		eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 0}))
	must(t, dead.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error {
		return errors.New("always fails")
	}))
	ids := []string{"X", "X ", "x", "X  "}
	var evts []*ddd.DomainEvent
	for i, id := range ids {
		evts = append(evts, mustEvent(t, "dl-sender", i, ddd.WithEventID(id)))
	}
	must(t, dead.Dispatch(ctx, evts...))
	start(t, dead)
	waitFor(t, 10*time.Second, "four dead letters", func() bool {
		n, _ := dead.CountDeadLetters(ctx)
		return n == int64(len(ids))
	})
	if n, err := dead.DiscardDeadLetters(ctx, "X"); err != nil || n != 1 {
		t.Errorf("discard %q found %d (%v), want 1", "X", n, err)
	}
	if n, err := dead.ReplayDeadLetters(ctx, "x"); err != nil || n != 1 {
		t.Errorf("replay %q found %d (%v), want 1", "x", n, err)
	}
	if got, want := deadLetterIDs(t, dead), []string{"X ", "X  "}; !equalStrings(got, want) {
		// "x" is back in the retry store and fails into a dead letter again.
		if !equalStrings(got, []string{"X ", "X  ", "x"}) {
			t.Errorf("dead letters %q, want %q (and %q once the replay failed again)", got, want, "x")
		}
	}

	// Service names differ by case.
	for _, name := range []string{"Exact-Svc", "exact-svc"} {
		b := newBus(t, db, name)
		must(t, b.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }))
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_services WHERE name IN ('Exact-Svc', 'exact-svc')"); n != 2 {
		t.Errorf("%d service rows for two names that differ by case, want 2", n)
	}
}

func deadLetterIDs(t testing.TB, bus *eventbus.EventBus) []string {
	t.Helper()
	dls, err := bus.DeadLetters(context.Background(), 0, 100)
	must(t, err)
	var out []string
	for _, dl := range dls {
		out = append(out, dl.Event.ID)
	}
	sort.Strings(out)
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
