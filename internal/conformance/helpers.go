package conformance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"gorm.io/gorm"
)

// OrderPlaced is the event most tests dispatch.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	N       int    `json:"n"` // position in its sender's sequence
}

func testLogger() *slog.Logger {
	if os.Getenv("EVENTBUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fastOptions make tests quick: short polls and leases, no cron.
func fastOptions(extra ...eventbus.Option) []eventbus.Option {
	return append([]eventbus.Option{
		eventbus.WithRunInterval(20 * time.Millisecond),
		eventbus.WithLeaseDuration(2 * time.Second),
		eventbus.WithCleanCron(""),
		eventbus.WithStartPosition(eventbus.StartFromEarliest),
		eventbus.WithLogger(testLogger()),
	}, extra...)
}

func newBus(t testing.TB, db *gorm.DB, service string, opts ...eventbus.Option) *eventbus.EventBus {
	t.Helper()
	b, err := eventbus.NewEventBus(service, db, fastOptions(opts...)...)
	if err != nil {
		t.Fatalf("NewEventBus(%s): %v", service, err)
	}
	return b
}

// start runs b until the returned stop is called (or the test ends); stop
// waits for Start to return.
func start(t testing.TB, b *eventbus.EventBus) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Start returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Start did not return within 30s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receive waits for a signal on ch, failing the test after timeout instead
// of hanging the whole package until go test's own deadline.
func receive(t testing.TB, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

func mustEvent(t testing.TB, sender string, n int, opts ...ddd.EventOption) *ddd.DomainEvent {
	t.Helper()
	evt, err := ddd.NewDomainEvent(sender, OrderPlaced{OrderID: sender, N: n}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return evt
}

// recorder is a handler that records every delivery.
type recorder struct {
	mu       sync.Mutex
	count    map[string]int               // event ID -> deliveries
	bySender map[string][]int             // sender -> N in delivery order
	running  map[string]bool              // sender -> a handler is running
	overlap  []string                     // senders seen running twice at once
	fail     func(*ddd.DomainEvent) error // optional failure injection
	total    int
}

func newRecorder() *recorder {
	return &recorder{count: map[string]int{}, bySender: map[string][]int{}, running: map[string]bool{}}
}

func (r *recorder) handle(ctx context.Context, evt *ddd.DomainEvent) error {
	r.mu.Lock()
	if r.running[evt.Sender] {
		r.overlap = append(r.overlap, evt.Sender)
	}
	r.running[evt.Sender] = true
	fail := r.fail
	r.mu.Unlock()
	var err error
	if fail != nil {
		err = fail(evt)
	}
	var p OrderPlaced
	if derr := evt.Decode(&p); derr != nil && err == nil {
		err = derr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running[evt.Sender] = false
	if err != nil {
		return err
	}
	r.count[evt.ID]++
	r.bySender[evt.Sender] = append(r.bySender[evt.Sender], p.N)
	r.total++
	return nil
}

func (r *recorder) deliveries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// count1 reports whether event id was delivered at least once.
func (r *recorder) count1(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[id] > 0
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.count)
}

// checkExactlyOnce verifies every id was delivered exactly once, nothing
// else was, each sender's events came in order and no sender ran twice at once.
func (r *recorder) checkExactlyOnce(t testing.TB, ids []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.overlap) > 0 {
		t.Errorf("senders handled concurrently: %v", r.overlap[:min(5, len(r.overlap))])
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
		if c := r.count[id]; c != 1 {
			t.Errorf("event %s delivered %d times, want 1", id, c)
		}
	}
	for id := range r.count {
		if !want[id] {
			t.Errorf("unexpected event %s delivered", id)
		}
	}
	r.checkOrderLocked(t)
}

func (r *recorder) checkOrderLocked(t testing.TB) {
	t.Helper()
	for s, ns := range r.bySender {
		for i := 1; i < len(ns); i++ {
			if ns[i] <= ns[i-1] {
				t.Errorf("sender %s: events out of order: %v", s, ns[max(0, i-3):min(len(ns), i+3)])
				break
			}
		}
	}
}

func senderName(i int) string { return fmt.Sprintf("order-%03d", i) }

// count runs a COUNT(*) query on db.
func count(t testing.TB, db *gorm.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.Raw(query, args...).Scan(&n).Error; err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
