package relay_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/relay"
	"github.com/nats-io/nats.go/jetstream"
	"gorm.io/gorm"
)

// forEachDB runs f on every database (SQLite always; MariaDB and
// PostgreSQL when their DSNs are set), in parallel.
func forEachDB(t *testing.T, f func(t *testing.T, db *dbtest.Database)) {
	natsURL(t)
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			t.Parallel()
			f(t, target.New(t))
		})
	}
}

func newRelay(t testing.TB, db *gorm.DB, js jetstream.JetStream, s testStream, service string, busOpts ...eventbus.Option) *relay.Relay {
	t.Helper()
	r, err := relay.New(db, js, relay.WithServiceName(service), relay.WithSubjectFunc(relay.SubjectFromType(s.prefix)),
		relay.WithBusOptions(busOptions(busOpts...)...), relay.WithLogger(testLogger()))
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	return r
}

func newProducer(t testing.TB, db *gorm.DB) *eventbus.EventBus {
	t.Helper()
	b, err := eventbus.NewEventBus("producer", db, busOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pending is how many events the bus's service has not finished.
func pending(t testing.TB, bus *eventbus.EventBus) int64 {
	t.Helper()
	return pendingOf(t, bus, bus.Service())
}

// pendingOf is how many events service has not finished (-1: unknown).
func pendingOf(t testing.TB, bus *eventbus.EventBus, service string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ss, err := bus.Services(ctx)
	if err != nil {
		t.Logf("services: %v", err)
		return -1
	}
	for _, s := range ss {
		if s.Name == service {
			return s.Pending + s.Retrying
		}
	}
	return -1
}

// orderLog records what a subscriber's handler saw, per sender.
type orderLog struct {
	mu   sync.Mutex
	seen map[string][]string
	n    int
}

func (o *orderLog) handle(_ context.Context, evt *ddd.DomainEvent, _ OrderPlaced) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen == nil {
		o.seen = map[string][]string{}
	}
	o.seen[evt.Sender] = append(o.seen[evt.Sender], evt.ID)
	o.n++
	return nil
}

func (o *orderLog) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

// runPipeline runs a relay of db to s and a subscriber ("billing") of s
// whose router records what it handles, until the test ends.
func runPipeline(t *testing.T, db *gorm.DB, js jetstream.JetStream, s testStream) (*relay.Relay, *orderLog) {
	t.Helper()
	r := newRelay(t, db, js, s, "relay")
	log := &orderLog{}
	router := ddd.NewRouter()
	if err := ddd.On(router, log.handle); err != nil {
		t.Fatal(err)
	}
	// A short ack wait: messages lost on the way in an outage come again sooner.
	sub, err := relay.NewSubscriber(js, s.name, "billing", router.HandleEvent, relay.WithSubscriberLogger(testLogger()),
		relay.WithAckWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	run(t, r.Run)
	run(t, sub.Run)
	return r, log
}

// TestRelayEndToEnd relays thousands of events of many senders, committed
// while the relay runs, and consumes them with a Subscriber: the stream
// holds each exactly once in each sender's commit order, with its
// metadata, and the subscriber's handler sees them in that order.
func TestRelayEndToEnd(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, database *dbtest.Database) {
		db := database.Open(t)
		_, js := connect(t, natsURL(t))
		s := newStream(t, js)
		r, log := runPipeline(t, db, js, s)

		const senders, perSender = 40, 75
		p := produce(t, db, newProducer(t, db), senders, perSender, r.Notify)
		total := p.total()
		waitFor(t, time.Minute, "the subscriber to handle every event", func() bool { return log.count() >= total })
		checkStream(t, p, s.events(t, js))
		log.mu.Lock()
		for sender, ids := range p.ids {
			if got := log.seen[sender]; len(got) != len(ids) || !equal(got, ids) {
				t.Errorf("sender %s: subscriber handled %d events out of order or twice", sender, len(got))
			}
		}
		log.mu.Unlock()
		// Duplicates (a batch published again after a lapsed lease on a
		// loaded machine) are dropped by JetStream: exactly total are new.
		if st := r.Stats(); st.Published != int64(total) {
			t.Errorf("relay stats %+v, want %d published", st, total)
		}
	})
}

func equal(a, b []string) bool {
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

// TestRelayDedup publishes every event a second time through a second
// relay service that starts from the earliest event: JetStream's duplicate
// window drops them all, so the stream's message count stays the same.
// On a stream whose window has passed, the same republish doubles the
// count: the case the README states.
func TestRelayDedup(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, database *dbtest.Database) {
		db := database.Open(t)
		_, js := connect(t, natsURL(t))
		s := newStream(t, js)
		short := newStream(t, js, func(c *jetstream.StreamConfig) { c.Duplicates = 100 * time.Millisecond })
		p := produce(t, db, newProducer(t, db), 10, 30, func() {})
		total := uint64(p.total())

		first := newRelay(t, db, js, s, "relay-a")
		stop := run(t, first.Run)
		waitFor(t, time.Minute, "the first relay", func() bool { return pending(t, first.Bus()) == 0 })
		stop()
		again := newRelay(t, db, js, s, "relay-b")
		stop = run(t, again.Run)
		waitFor(t, time.Minute, "the second relay", func() bool { return pending(t, again.Bus()) == 0 })
		stop()
		if n := s.msgs(t, js); n != total {
			t.Fatalf("stream holds %d messages after publishing %d events twice, want %d", n, total, total)
		}
		if st := again.Stats(); st.Duplicates < int64(total) || st.Published != 0 {
			t.Fatalf("second relay: %+v, want nothing new and %d (or more, after a lapsed lease) duplicates", st, total)
		}
		checkStream(t, p, s.events(t, js))

		// Past the window, the duplicates stay.
		first = newRelay(t, db, js, short, "relay-c")
		stop = run(t, first.Run)
		waitFor(t, time.Minute, "the third relay", func() bool { return pending(t, first.Bus()) == 0 })
		stop()
		passed := time.Now().Add(200 * time.Millisecond)
		waitFor(t, time.Second, "the duplicate window to pass", func() bool { return time.Now().After(passed) })
		again = newRelay(t, db, js, short, "relay-d")
		stop = run(t, again.Run)
		waitFor(t, time.Minute, "the fourth relay", func() bool { return pending(t, again.Bus()) == 0 })
		stop()
		if n := short.msgs(t, js); n != 2*total {
			t.Fatalf("stream with a 100ms window holds %d messages, want %d (every event twice)", n, 2*total)
		}
	})
}

func dbtestSQLite(t *testing.T) *gorm.DB { return dbtest.SQLite(t).Open(t) }

// TestRelayDeadLetter: an event the relay can never publish (its subject
// is invalid, its SubjectFunc panics, it exceeds the stream's MaxMsgSize)
// becomes a dead letter of the relay's service at once, the sender's later
// events go on, and replaying it publishes it.
func TestRelayDeadLetter(t *testing.T) {
	t.Parallel()
	natsURL(t)
	db := dbtestSQLite(t)
	_, js := connect(t, natsURL(t))
	s := newStream(t, js, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 4096 })
	var bad atomic.Bool
	bad.Store(true)
	subject := relay.SubjectFromType(s.prefix)
	r, err := relay.New(db, js, relay.WithServiceName("relay"), relay.WithBusOptions(busOptions()...), relay.WithLogger(testLogger()),
		relay.WithSubjectFunc(func(evt *ddd.DomainEvent) (string, error) {
			switch {
			case evt.Metadata["bad"] == "panic" && bad.Load():
				panic("no subject for you")
			case evt.Metadata["bad"] != "" && bad.Load():
				return s.prefix + ".has space", nil
			}
			return subject(evt)
		}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, r.Run)
	poison := event(t, "o1", 1, ddd.WithMetadata("bad", "yes"))
	panicky := event(t, "o1", 3, ddd.WithMetadata("bad", "panic"))
	huge, err := ddd.NewDomainEvent("o1", OrderPlaced{OrderID: strings.Repeat("x", 8000)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Bus().Dispatch(ctx, event(t, "o1", 0), poison, event(t, "o1", 2), panicky, huge, event(t, "o1", 4)); err != nil {
		t.Fatal(err)
	}
	r.Notify()
	waitFor(t, 30*time.Second, "three events in the stream", func() bool { return s.msgs(t, js) == 3 })
	waitFor(t, 30*time.Second, "three relay dead letters", func() bool {
		n, err := r.Bus().CountDeadLetters(ctx)
		return err == nil && n == 3
	})
	dls, err := r.Bus().DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) != 3 || dls[0].Event.ID != poison.ID || !strings.Contains(dls[0].LastError, relay.ErrInvalidSubject.Error()) ||
		dls[1].Event.ID != panicky.ID || !strings.Contains(dls[1].LastError, "panicked") ||
		dls[2].Event.ID != huge.ID || !strings.Contains(dls[2].LastError, "10054") || dls[2].Attempts != 1 {
		t.Fatalf("relay dead letters %+v, %v", dls, err)
	}
	bad.Store(false)
	if n, err := r.Bus().ReplayDeadLetters(ctx, poison.ID); n != 1 || err != nil {
		t.Fatalf("ReplayDeadLetters = %d, %v", n, err)
	}
	waitFor(t, 30*time.Second, "the replayed event in the stream", func() bool { return s.msgs(t, js) == 4 })
	if got := s.events(t, js); got[3].ID != poison.ID {
		t.Fatalf("the replayed event is not last in the stream")
	}
}
