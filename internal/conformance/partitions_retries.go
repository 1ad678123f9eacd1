package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/internal/store"
)

func init() {
	register("PartitionsRetryParkAndDeadLetterPerPartition", testPartitionsRetries)
}

// testPartitionsRetries: two instances of a service of 2 partitions (one
// each). FIFO events whose first attempt fails are retried, and later
// events of their senders park behind them, each by the instance whose
// partition the sender is in; a sender that always fails has its events
// dead-lettered one after the other (each after its 3 attempts, the next
// parked behind it until then), listed for the service as a whole, while
// other senders go on.
func testPartitionsRetries(t *testing.T, tdb *dbtest.Database) {
	const service, parts, senders, perSender = "retry-p", 2, 8, 5
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	dead := "acct-000" // always fails
	type call struct {
		by, sender string
		n          int
		ok         bool
	}
	var mu sync.Mutex
	var calls []call
	tried := map[string]bool{}
	handler := func(by string) ddd.DomainEventHandler {
		return func(ctx context.Context, evt *ddd.DomainEvent) error {
			n := decodeN(t, evt)
			mu.Lock()
			defer mu.Unlock()
			first := !tried[evt.ID]
			tried[evt.ID] = true
			fail := evt.Sender == dead || (first && n%2 == 0)
			calls = append(calls, call{by: by, sender: evt.Sender, n: n, ok: !fail})
			if fail {
				return errors.New("not now")
			}
			return nil
		}
	}
	var buses []*eventbus.EventBus
	for _, id := range []string{"inst-a", "inst-b"} {
		bus := newBus(t, tdb.Open(t), service, eventbus.WithPartitions(parts), eventbus.WithInstanceID(id),
			eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 2}), eventbus.WithLeaseDuration(5*time.Second))
		must(t, bus.RegisterEventHandler(handler(id)))
		start(t, bus)
		buses = append(buses, bus)
	}
	waitOwners(t, producer, service, parts, 2)
	owner := map[int]string{}
	rows, err := producer.Services(context.Background())
	must(t, err)
	for _, r := range rows {
		if r.Parent == service {
			owner[r.Partition] = r.Owner
		}
	}
	for n := range perSender {
		var evts []*ddd.DomainEvent
		for s := range senders {
			evts = append(evts, mustEvent(t, fmt.Sprintf("acct-%03d", s), n, ddd.WithSendType(ddd.SendFIFO)))
		}
		must(t, producer.Dispatch(context.Background(), evts...))
	}
	okCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		k := 0
		for _, c := range calls {
			if c.ok {
				k++
			}
		}
		return k
	}
	want := (senders - 1) * perSender
	waitFor(t, 30*time.Second, "every other sender's events handled", func() bool { return okCount() >= want })
	waitFor(t, 30*time.Second, "the failing sender's events to become dead letters", func() bool {
		n, err := buses[0].CountDeadLetters(context.Background())
		must(t, err)
		return n == perSender
	})
	dls, err := buses[1].DeadLetters(context.Background(), 0, 10)
	must(t, err)
	if len(dls) != perSender {
		t.Fatalf("%d dead letters listed, want %d", len(dls), perSender)
	}
	for _, d := range dls {
		if d.Event.Sender != dead || d.Attempts != 3 {
			t.Errorf("dead letter of %s after %d attempts, want %s after 3", d.Event.Sender, d.Attempts, dead)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	next := map[string]int{}
	for _, c := range calls {
		if want := owner[store.PartitionOf(c.sender, parts)]; c.by != want {
			t.Errorf("sender %s (partition of %s) handled by %s", c.sender, want, c.by)
		}
		if c.sender == dead {
			// Each event gets its 3 attempts before the next one starts.
			if k := next[dead]; c.n != k/3 {
				t.Errorf("%s: event %d ran as attempt %d of event %d (FIFO parking)", dead, c.n, k%3+1, k/3)
			}
			next[dead]++
			continue
		}
		switch {
		case c.n < next[c.sender]:
			t.Errorf("sender %s: event %d ran again after it succeeded", c.sender, c.n)
		case c.n > next[c.sender]:
			t.Errorf("sender %s: event %d ran before event %d succeeded", c.sender, c.n, next[c.sender])
		case c.ok:
			next[c.sender]++
		}
	}
	for s := 1; s < senders; s++ {
		if k := next[fmt.Sprintf("acct-%03d", s)]; k != perSender {
			t.Errorf("sender acct-%03d: %d of %d events succeeded", s, k, perSender)
		}
	}
}
