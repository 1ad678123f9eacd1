package relay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/relay"
	"github.com/nats-io/nats.go/jetstream"
)

// publish puts evts on the stream as the relay would.
func publish(t testing.TB, js jetstream.JetStream, s testStream, evts ...*ddd.DomainEvent) {
	t.Helper()
	subject := relay.SubjectFromType(s.prefix)
	for _, evt := range evts {
		subj, _ := subject(evt)
		msg, err := relay.Encode(subj, evt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
}

func event(t testing.TB, sender string, n int, opts ...ddd.EventOption) *ddd.DomainEvent {
	t.Helper()
	evt, err := ddd.NewDomainEvent(sender, OrderPlaced{OrderID: sender, N: n}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return evt
}

type Unrouted struct{}

// consumerIdle reports whether the durable has nothing left to deliver or
// acknowledge.
func consumerIdle(t testing.TB, js jetstream.JetStream, stream, durable string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		return false
	}
	info := c.CachedInfo()
	return info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
}

// TestSubscriberOutcomes maps each handler outcome onto JetStream: success
// and "no handler" ack, a failure naks with the strategy's delay until the
// strategy gives up (counted by deliveries), a permanent error and a
// message that is not an event go to the dead letters at once; dead letters
// are listed, replayed to this durable only, and discarded.
func TestSubscriberOutcomes(t *testing.T) {
	t.Parallel()
	_, js := connect(t, natsURL(t))
	s := newStream(t, js)
	var healed atomic.Bool
	attempts := map[string]int{}
	var mu sync.Mutex
	router := ddd.NewRouter()
	err := ddd.On(router, func(ctx context.Context, evt *ddd.DomainEvent, e OrderPlaced) error {
		mu.Lock()
		attempts[e.OrderID]++
		n := attempts[e.OrderID]
		mu.Unlock()
		switch {
		case e.OrderID == "flaky" && n < 3:
			return errors.New("flaky")
		case e.OrderID == "broken" && !healed.Load():
			return fmt.Errorf("broken, attempt %d\nsecond line", n)
		case e.OrderID == "poison":
			return ddd.Permanent(errors.New("poison"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := relay.NewSubscriber(js, s.name, "billing", router.HandleEvent, relay.WithSubscriberLogger(testLogger()),
		relay.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 2, Interval: 50 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	var audited atomic.Int64
	audit, err := relay.NewSubscriber(js, s.name, "audit", func(context.Context, *ddd.DomainEvent) error {
		audited.Add(1)
		return nil
	}, relay.WithSubscriberLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, sub.Run)
	run(t, audit.Run)

	unrouted, _ := ddd.NewDomainEvent("u", Unrouted{})
	broken, poison := event(t, "broken", 1), event(t, "poison", 1)
	publish(t, js, s, event(t, "ok", 1), event(t, "flaky", 1), broken, poison, unrouted)
	if _, err := js.Publish(context.Background(), s.prefix+".foreign", []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	waitFor(t, 30*time.Second, "three dead letters", func() bool {
		n, err := sub.CountDeadLetters(ctx)
		return err == nil && n == 3 && consumerIdle(t, js, s.name, "billing")
	})
	mu.Lock()
	if attempts["ok"] != 1 || attempts["flaky"] != 3 || attempts["broken"] != 3 || attempts["poison"] != 1 {
		t.Errorf("attempts %v, want ok 1, flaky 3, broken 3 (1 + 2 retries), poison 1", attempts)
	}
	mu.Unlock()
	if st := sub.Stats(); st.Handled != 2 || st.Skipped != 1 || st.DeadLetters != 3 || st.Failed != 6 {
		t.Errorf("stats %+v, want 2 handled, 1 skipped, 6 failed attempts, 3 dead letters", st)
	}

	dls, err := sub.DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) != 3 {
		t.Fatalf("DeadLetters: %d, %v", len(dls), err)
	}
	byID := map[string]relay.DeadLetter{}
	for _, dl := range dls {
		if dl.Event == nil {
			if !errors.Is(dl.DecodeError, relay.ErrNotAnEvent) || dl.Subject != s.prefix+".foreign" || dl.Attempts != 1 {
				t.Errorf("foreign dead letter %+v", dl)
			}
			continue
		}
		byID[dl.Event.ID] = dl
	}
	if dl := byID[broken.ID]; dl.Attempts != 3 || dl.LastError != "broken, attempt 3 second line" || dl.StreamSeq != 3 ||
		dl.Subject != s.prefix+".relay_test.OrderPlaced" || dl.FailedAt.IsZero() || string(dl.Event.Payload) != string(broken.Payload) {
		t.Errorf("broken's dead letter %+v", dl)
	}
	if dl := byID[poison.ID]; dl.Attempts != 1 || !strings.Contains(dl.LastError, "poison") {
		t.Errorf("poison's dead letter %+v", dl)
	}
	if more, err := sub.DeadLetters(ctx, dls[len(dls)-1].Seq, 10); err != nil || len(more) != 0 {
		t.Errorf("DeadLetters after the last: %d, %v", len(more), err)
	}

	// Replay: a new message for billing alone, with a fresh budget.
	healed.Store(true)
	auditedBefore, skippedBefore := audited.Load(), audit.Stats().Skipped
	if n, err := sub.ReplayDeadLetters(ctx, byID[broken.ID].Seq); n != 1 || err != nil {
		t.Fatalf("ReplayDeadLetters = %d, %v", n, err)
	}
	if n, err := sub.ReplayDeadLetters(ctx, byID[broken.ID].Seq); n != 0 || err != nil {
		t.Fatalf("second ReplayDeadLetters = %d, %v; want 0", n, err)
	}
	waitFor(t, 30*time.Second, "the replay", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return attempts["broken"] == 4 && audit.Stats().Skipped == skippedBefore+1
	})
	if audited.Load() != auditedBefore {
		t.Errorf("the audit durable handled a replay meant for billing")
	}
	if n, err := sub.DiscardDeadLetters(ctx, byID[poison.ID].Seq, byID[poison.ID].Seq); n != 1 || err != nil {
		t.Fatalf("DiscardDeadLetters = %d, %v", n, err)
	}
	if n, err := sub.CountDeadLetters(ctx); n != 1 || err != nil {
		t.Fatalf("CountDeadLetters = %d, %v; want the foreign one", n, err)
	}
	// The audit durable's own dead letter (the foreign message) is not billing's.
	if n, err := audit.CountDeadLetters(ctx); n != 1 || err != nil {
		t.Fatalf("audit CountDeadLetters = %d, %v", n, err)
	}
}

// TestSubscriberOrder checks the order guarantees: one sender's events are
// never handled at the same time and are handled in stream order; a failed
// FIFO event holds back its sender's later events until it succeeds, a
// failed normal event is retried after them.
func TestSubscriberOrder(t *testing.T) {
	t.Parallel()
	_, js := connect(t, natsURL(t))
	s := newStream(t, js)
	const senders, perSender = 30, 30
	var mu sync.Mutex
	done := map[string][]int{}
	failed := map[string]int{}
	inFlight := map[string]int{}
	var overlap atomic.Bool
	router := ddd.NewRouter()
	err := ddd.On(router, func(ctx context.Context, evt *ddd.DomainEvent, e OrderPlaced) error {
		mu.Lock()
		inFlight[evt.Sender]++
		if inFlight[evt.Sender] > 1 {
			overlap.Store(true)
		}
		mu.Unlock()
		defer func() { mu.Lock(); inFlight[evt.Sender]--; mu.Unlock() }()
		mu.Lock()
		defer mu.Unlock()
		if e.N == 0 && (evt.Sender == "fifo" || evt.Sender == "normal") && failed[evt.Sender] < 2 {
			failed[evt.Sender]++
			return errors.New("first event fails twice")
		}
		done[evt.Sender] = append(done[evt.Sender], e.N)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := relay.NewSubscriber(js, s.name, "billing", router.HandleEvent, relay.WithSubscriberLogger(testLogger()),
		relay.WithConcurrency(8), relay.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 5, Interval: 100 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	var evts []*ddd.DomainEvent
	for n := range 3 {
		evts = append(evts, event(t, "fifo", n, ddd.WithSendType(ddd.SendFIFO)), event(t, "normal", n))
	}
	for n := range perSender {
		for i := range senders {
			evts = append(evts, event(t, senderName(i), n))
		}
	}
	publish(t, js, s, evts...)
	run(t, sub.Run)
	waitFor(t, time.Minute, "every event handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done["fifo"]) == 3 && len(done["normal"]) == 3 && len(done[senderName(senders-1)]) == perSender
	})
	mu.Lock()
	defer mu.Unlock()
	if overlap.Load() {
		t.Error("one sender's events were handled at the same time")
	}
	if fmt.Sprint(done["fifo"]) != "[0 1 2]" {
		t.Errorf("FIFO sender handled %v, want [0 1 2]: its later events must wait for the failed one", done["fifo"])
	}
	if fmt.Sprint(done["normal"]) != "[1 2 0]" {
		t.Errorf("normal sender handled %v, want [1 2 0]: the failed event is retried on its own", done["normal"])
	}
	for i := range senders {
		got := done[senderName(i)]
		for n := range got {
			if got[n] != n {
				t.Fatalf("sender %s handled %v, out of stream order", senderName(i), got)
			}
		}
	}
}

// TestSubscriberKeepsHeldMessagesAlive: a handler call longer than the ack
// wait, and the sender's message queued behind it, are not delivered a
// second time meanwhile (InProgress every third of the ack wait).
func TestSubscriberKeepsHeldMessagesAlive(t *testing.T) {
	t.Parallel()
	_, js := connect(t, natsURL(t))
	s := newStream(t, js)
	const ackWait = time.Second
	var calls atomic.Int64
	sub, err := relay.NewSubscriber(js, s.name, "billing", func(ctx context.Context, evt *ddd.DomainEvent) error {
		if calls.Add(1) == 1 {
			<-time.After(3 * ackWait) // a slow handler, not a wait for a condition
		}
		return nil
	}, relay.WithSubscriberLogger(testLogger()), relay.WithAckWait(ackWait))
	if err != nil {
		t.Fatal(err)
	}
	run(t, sub.Run)
	publish(t, js, s, event(t, "o1", 0), event(t, "o1", 1))
	waitFor(t, 30*time.Second, "both events handled and acknowledged", func() bool {
		return calls.Load() >= 2 && consumerIdle(t, js, s.name, "billing")
	})
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler called %d times for 2 events", n)
	}
	c, err := js.Consumer(context.Background(), s.name, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if n := c.CachedInfo().Delivered.Consumer; n != 2 {
		t.Fatalf("JetStream made %d deliveries of 2 messages: a held message was delivered again", n)
	}
}
