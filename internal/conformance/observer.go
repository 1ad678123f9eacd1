package conformance

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("ObserverSeesWhatTheBusDoes", testObserver)
	register("ObserverPanicsDoNotBreakTheBus", testObserverPanics)
	register("ObserverSeesAbandonedCalls", testObserverAbandoned)
}

// testObserverAbandoned: a call that ignores its context past
// HandlerTimeout is a failed attempt that says so; one still running when
// a stop's ShutdownGrace runs out is abandoned.
func testObserverAbandoned(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	obs := &seen{}
	bus := newBus(t, db, "abandoning", eventbus.WithObserver(obs), eventbus.WithHandlerTimeout(100*time.Millisecond),
		eventbus.WithShutdownGrace(100*time.Millisecond), eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 5}))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	started := make(chan string, 16)
	must(t, bus.RegisterEventHandler(func(_ context.Context, evt *ddd.DomainEvent) error {
		started <- evt.Sender
		<-release // ignores its context
		return nil
	}))
	stuck := mustEvent(t, "stuck", 1)
	must(t, bus.Dispatch(context.Background(), stuck))
	stop := start(t, bus)
	waitFor(t, 15*time.Second, "the timed-out call to be abandoned", func() bool {
		o, _ := obs.outcomes(stuck.ID)
		return len(o) >= 1
	})
	o, _ := obs.outcomes(stuck.ID)
	obs.mu.Lock()
	var end eventbus.HandlerEnd
	for _, e := range obs.ends {
		if e.Event.ID == stuck.ID {
			end = e
			break
		}
	}
	obs.mu.Unlock()
	if o[0] != eventbus.OutcomeRetry || end.Err == nil || !strings.Contains(end.Err.Error(), "abandoned") {
		t.Errorf("a call abandoned past HandlerTimeout: %s, %v; want a retry whose error says it was abandoned", o[0], end.Err)
	}
	// Another sender's call is running when the bus stops.
	late := mustEvent(t, "late", 1)
	must(t, bus.Dispatch(context.Background(), late))
	waitFor(t, 15*time.Second, "the second call to start", func() bool {
		for {
			select {
			case s := <-started:
				if s == "late" {
					return true
				}
			default:
				return false
			}
		}
	})
	stop()
	if o, _ := obs.outcomes(late.ID); len(o) != 1 || o[0] != eventbus.OutcomeAbandoned {
		t.Errorf("a call still running when ShutdownGrace ran out: %v, want abandoned", o)
	}
}

// seen records what an observer was told.
type seen struct {
	eventbus.BaseObserver
	mu         sync.Mutex
	dispatches []eventbus.DispatchEnd
	starts     []eventbus.HandlerStart
	ends       []eventbus.HandlerEnd
	batches    []eventbus.SequencerBatch
	leases     []eventbus.LeaseChange
	endCtxOK   int // HandlerEnd got the context HandlerStart returned
}

type seenKey struct{}

func (s *seen) DispatchStart(ctx context.Context, e eventbus.DispatchStart) context.Context {
	for _, evt := range e.Events {
		if evt.Metadata == nil {
			evt.Metadata = map[string]string{}
		}
		evt.Metadata["observed"] = e.Service
	}
	return ctx
}

func (s *seen) DispatchEnd(_ context.Context, e eventbus.DispatchEnd) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dispatches = append(s.dispatches, e)
}

func (s *seen) HandlerStart(ctx context.Context, e eventbus.HandlerStart) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts = append(s.starts, e)
	return context.WithValue(ctx, seenKey{}, e.Event.ID)
}

func (s *seen) HandlerEnd(ctx context.Context, e eventbus.HandlerEnd) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ends = append(s.ends, e)
	if ctx.Value(seenKey{}) == e.Event.ID {
		s.endCtxOK++
	}
}

func (s *seen) SequencerBatch(_ context.Context, e eventbus.SequencerBatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, e)
}

func (s *seen) LeaseChange(_ context.Context, e eventbus.LeaseChange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leases = append(s.leases, e)
}

// outcomes returns the outcomes and attempts of event id, in order.
func (s *seen) outcomes(id string) ([]eventbus.Outcome, []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []eventbus.Outcome
	var att []int
	for _, e := range s.ends {
		if e.Event.ID == id {
			out = append(out, e.Outcome)
			att = append(att, e.Attempt)
		}
	}
	return out, att
}

func testObserver(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	obs := &seen{}
	bus := newBus(t, db, "observed", eventbus.WithObserver(obs), eventbus.WithObserver(nil),
		eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 1}))
	var mu sync.Mutex
	calls := map[string]int{}
	var handlerCtxOK, metadataOK int
	must(t, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		mu.Lock()
		calls[evt.ID]++
		n := calls[evt.ID]
		if ctx.Value(seenKey{}) == evt.ID {
			handlerCtxOK++
		}
		if evt.Metadata["observed"] == "observed" {
			metadataOK++
		}
		mu.Unlock()
		switch evt.Sender {
		case "flaky":
			if n == 1 {
				return errors.New("first attempt fails")
			}
		case "broken":
			return errors.New("always fails")
		case "unknown":
			return ddd.ErrNoHandler
		}
		return nil
	}))
	ok, flaky, broken, unknown := mustEvent(t, "ok", 1), mustEvent(t, "flaky", 1), mustEvent(t, "broken", 1), mustEvent(t, "unknown", 1)
	must(t, bus.Dispatch(ctx, ok, flaky, broken, unknown))
	c, err := bus.DispatchBegin(ctx, mustEvent(t, "tx", 1))
	must(t, err)
	must(t, bus.Commit(c))
	if err := bus.Dispatch(ctx, &ddd.DomainEvent{ID: "bad"}); err == nil {
		t.Fatal("an invalid event was accepted")
	}
	stop := start(t, bus)
	waitFor(t, 15*time.Second, "every outcome", func() bool {
		o, _ := obs.outcomes(broken.ID)
		f, _ := obs.outcomes(flaky.ID)
		return len(o) == 2 && len(f) == 2
	})
	stop()

	cases := []struct {
		evt      *ddd.DomainEvent
		outcomes []eventbus.Outcome
	}{
		{ok, []eventbus.Outcome{eventbus.OutcomeHandled}},
		{flaky, []eventbus.Outcome{eventbus.OutcomeRetry, eventbus.OutcomeHandled}},
		{broken, []eventbus.Outcome{eventbus.OutcomeRetry, eventbus.OutcomeDeadLetter}},
		{unknown, []eventbus.Outcome{eventbus.OutcomeSkipped}},
	}
	for _, c := range cases {
		got, attempts := obs.outcomes(c.evt.ID)
		if len(got) != len(c.outcomes) {
			t.Errorf("%s: outcomes %v, want %v", c.evt.Sender, got, c.outcomes)
			continue
		}
		for i := range got {
			if got[i] != c.outcomes[i] || attempts[i] != i+1 {
				t.Errorf("%s: outcomes %v attempts %v, want %v with attempts 1..", c.evt.Sender, got, attempts, c.outcomes)
			}
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	calls1 := 0
	for _, n := range calls {
		calls1 += n
	}
	if len(obs.starts) != calls1 || len(obs.ends) != calls1 || obs.endCtxOK != calls1 || handlerCtxOK != calls1 {
		t.Errorf("%d handler calls: %d starts, %d ends, %d ends with the start's context, %d handlers with it",
			calls1, len(obs.starts), len(obs.ends), obs.endCtxOK, handlerCtxOK)
	}
	if metadataOK != calls1 {
		t.Errorf("metadata set at dispatch reached %d of %d handler calls", metadataOK, calls1)
	}
	for _, e := range obs.ends {
		if e.Service != "observed" || e.Seq <= 0 || e.Duration <= 0 {
			t.Errorf("handler end %+v", e)
		}
		if e.Outcome.Failed() != (e.Err != nil) {
			t.Errorf("handler end %s with error %v", e.Outcome, e.Err)
		}
	}
	if len(obs.dispatches) != 3 || obs.dispatches[0].Err != nil || len(obs.dispatches[0].Events) != 4 ||
		!obs.dispatches[1].Transactional || obs.dispatches[1].Err != nil || obs.dispatches[2].Err == nil {
		t.Errorf("dispatches %+v: want 4 events, 1 transactional, 1 refused", obs.dispatches)
	}
	sequenced := 0
	for _, b := range obs.batches {
		sequenced += b.Events
	}
	if sequenced != 5 {
		t.Errorf("sequencer batches sequenced %d events, want 5", sequenced)
	}
	if len(obs.leases) != 2 || obs.leases[0].Kind != eventbus.LeaseAcquired || obs.leases[1].Kind != eventbus.LeaseReleased ||
		obs.leases[0].Epoch != obs.leases[1].Epoch || obs.leases[0].Service != "observed" {
		t.Errorf("lease changes %+v: want acquired then released", obs.leases)
	}
}

// panicky panics in every method.
type panicky struct{}

func (panicky) DispatchStart(context.Context, eventbus.DispatchStart) context.Context { panic("boom") }
func (panicky) DispatchEnd(context.Context, eventbus.DispatchEnd)                     { panic("boom") }
func (panicky) HandlerStart(context.Context, eventbus.HandlerStart) context.Context   { panic("boom") }
func (panicky) HandlerEnd(context.Context, eventbus.HandlerEnd)                       { panic("boom") }
func (panicky) SequencerBatch(context.Context, eventbus.SequencerBatch)               { panic("boom") }
func (panicky) LeaseChange(context.Context, eventbus.LeaseChange)                     { panic("boom") }

func testObserverPanics(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	logs := newLogSink()
	obs := &seen{}
	bus := newBus(t, db, "panicky", eventbus.WithObserver(panicky{}), eventbus.WithObserver(obs), eventbus.WithLogger(logs.logger()))
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	ids := dispatchN(t, bus, "p", 1, 5)
	stop := start(t, bus)
	waitFor(t, 15*time.Second, "5 deliveries", func() bool { return rec.deliveries() == 5 })
	stop()
	rec.checkExactlyOnce(t, ids)
	if n := logs.count("observer panicked"); n < 1 {
		t.Errorf("a panicking observer was not logged")
	}
}
