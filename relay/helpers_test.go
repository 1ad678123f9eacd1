package relay_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/relay"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gorm.io/gorm"
)

// natsEnv names the NATS server the tests use; without it they skip.
const natsEnv = "EVENTBUS_NATS_URL"

func natsURL(t testing.TB) string {
	u := os.Getenv(natsEnv)
	if u == "" {
		t.Skipf("skipping: set %s to run this test against a real nats-server with JetStream (e.g. %s=nats://127.0.0.1:4222)", natsEnv, natsEnv)
	}
	return u
}

func testLogger() *slog.Logger {
	if os.Getenv("EVENTBUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// connect opens a connection that reconnects for ever, closed when t ends.
func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func randomName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// testStream is a stream of the test's own, capturing prefix.>, deleted
// (with its dead-letter stream) when the test ends.
type testStream struct {
	name, prefix string
}

func newStream(t testing.TB, js jetstream.JetStream, edit ...func(*jetstream.StreamConfig)) testStream {
	t.Helper()
	id := randomName()
	s := testStream{name: "EBT_" + id, prefix: "ebt" + id}
	cfg := jetstream.StreamConfig{Name: s.name, Subjects: []string{s.prefix + ".>"}, Storage: jetstream.FileStorage}
	for _, e := range edit {
		e(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatalf("create stream %s: %v", s.name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, name := range []string{s.name, s.name + "_DEAD"} {
			if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Logf("delete stream %s: %v (delete it by hand)", name, err)
			}
		}
	})
	return s
}

// msgs returns how many messages the stream holds.
func (s testStream) msgs(t testing.TB, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, s.name)
	if err != nil {
		t.Logf("stream info %s: %v", s.name, err)
		return 0
	}
	return st.CachedInfo().State.Msgs
}

// events reads every message of the stream, in stream order, as events.
func (s testStream) events(t testing.TB, js jetstream.JetStream) []*ddd.DomainEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := s.msgs(t, js)
	cons, err := js.OrderedConsumer(ctx, s.name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	var out []*ddd.DomainEvent
	for uint64(len(out)) < want {
		batch, err := cons.Fetch(int(min(want-uint64(len(out)), 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		for m := range batch.Messages() {
			evt, err := relay.Decode(m.Headers(), m.Data())
			if err != nil {
				t.Fatalf("stream message %s: %v", m.Subject(), err)
			}
			out = append(out, evt)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("fetch: %v", err)
		}
	}
	return out
}

// OrderPlaced is the event the tests dispatch.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	N       int    `json:"n"` // position in its sender's sequence
}

func senderName(i int) string { return fmt.Sprintf("order-%03d", i) }

// produced is what producers committed: each sender's event ids in commit order.
type produced struct {
	mu  sync.Mutex
	ids map[string][]string
}

func (p *produced) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, ids := range p.ids {
		n += len(ids)
	}
	return n
}

// produce commits perSender events for each of senders senders (see
// produceFrom), failing the test on an error.
func produce(t testing.TB, db *gorm.DB, bus *eventbus.EventBus, senders, perSender int, notify func()) *produced {
	t.Helper()
	p, err := produceFrom(db, bus, 0, senders, perSender, notify)
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	return p
}

// produceFrom commits perSender events for each of the senders sequenced
// first to first+senders-1, on 4 goroutines (each owns a quarter of the
// senders), 1 to 3 events of one sender per transaction, through bus;
// after each commit it calls notify.
func produceFrom(db *gorm.DB, bus *eventbus.EventBus, first, senders, perSender int, notify func()) (*produced, error) {
	p := &produced{ids: map[string][]string{}}
	engine, err := ddd.NewEngine(db, ddd.WithEventBus(bus), ddd.WithPostCommitHook(func(context.Context) { notify() }))
	if err != nil {
		return nil, err
	}
	const producers = 4
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for g := range producers {
		wg.Go(func() {
			done := make(map[int]int) // sender -> events committed
			for round := 0; ; round++ {
				busy := false
				for s := first + g; s < first+senders; s += producers {
					if done[s] == perSender {
						continue
					}
					busy = true
					evts, err := newEvents(senderName(s), done[s], min(1+(round+s)%3, perSender-done[s]))
					if err == nil {
						err = runWithRetry(engine, evts)
					}
					if err != nil {
						errs <- err
						return
					}
					done[s] += len(evts)
					p.add(evts)
				}
				if !busy {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return p, <-errs
}

// merge adds what q produced (other senders) to p.
func (p *produced) merge(q *produced) {
	for s, ids := range q.ids {
		p.ids[s] = append(p.ids[s], ids...)
	}
}

func (p *produced) add(evts []*ddd.DomainEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range evts {
		p.ids[e.Sender] = append(p.ids[e.Sender], e.ID)
	}
}

// newEvents returns k events of sender sequenced from n, with trace
// context and a metadata entry that cannot be a header of its own.
func newEvents(sender string, n, k int) ([]*ddd.DomainEvent, error) {
	var evts []*ddd.DomainEvent
	for i := range k {
		evt, err := ddd.NewDomainEvent(sender, OrderPlaced{OrderID: sender, N: n + i},
			ddd.WithMetadata("traceparent", "00-"+strings.Repeat("a", 32)+"-"+strings.Repeat("b", 16)+"-01"),
			ddd.WithMetadata("odd key", "x\ny"))
		if err != nil {
			return nil, err
		}
		evts = append(evts, evt)
	}
	return evts, nil
}

// runWithRetry commits evts in one unit of work, retrying a transaction
// the database aborted (SQLite busy, deadlock): nothing is committed then.
func runWithRetry(engine *ddd.Engine, evts []*ddd.DomainEvent) error {
	var err error
	for range 20 {
		err = engine.Run(context.Background(), func(ctx context.Context, uow *ddd.UnitOfWork) error {
			uow.Raise(evts...)
			return nil
		})
		if err == nil {
			return nil
		}
	}
	return err
}

// checkStream checks that the stream holds every produced event exactly
// once, each sender's in commit order.
func checkStream(t testing.TB, p *produced, got []*ddd.DomainEvent) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	next := map[string]int{}
	for _, evt := range got {
		if seen[evt.ID] {
			t.Fatalf("event %s is in the stream twice", evt.ID)
		}
		seen[evt.ID] = true
		ids := p.ids[evt.Sender]
		i := next[evt.Sender]
		if i >= len(ids) || ids[i] != evt.ID {
			t.Fatalf("sender %s: stream has %s at position %d, want %v", evt.Sender, evt.ID, i, at(ids, i))
		}
		next[evt.Sender] = i + 1
		if evt.Metadata["traceparent"] == "" || evt.Metadata["odd key"] != "x\ny" {
			t.Fatalf("event %s lost its metadata: %v", evt.ID, evt.Metadata)
		}
	}
	for s, ids := range p.ids {
		if next[s] != len(ids) {
			t.Fatalf("sender %s: %d of %d events in the stream", s, next[s], len(ids))
		}
	}
}

func at(ids []string, i int) string {
	if i < len(ids) {
		return ids[i]
	}
	return "(none)"
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// busOptions make tests quick: short polls and leases, no cron, every event.
func busOptions(extra ...eventbus.Option) []eventbus.Option {
	return append([]eventbus.Option{
		eventbus.WithRunInterval(20 * time.Millisecond),
		eventbus.WithLeaseDuration(2 * time.Second),
		eventbus.WithCleanCron(""),
		eventbus.WithStartPosition(eventbus.StartFromEarliest),
		eventbus.WithLogger(testLogger()),
	}, extra...)
}

// run runs f(ctx) in the background until the returned stop is called
// (or the test ends); stop waits for f to return and fails on its error.
func run(t testing.TB, f func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(time.Minute):
				t.Errorf("run did not return within a minute of stopping")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
