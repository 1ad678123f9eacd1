package conformance

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("FailuresAndDeadLettersAreLoggedOnce", testFailureLogs)
}

// Each failed attempt is logged once, with its number and when the next
// one runs; the last one says the event becomes a dead letter. The log
// records carry the handler's context, so a user's slog handler can add
// what it holds (a trace id, say).
func testFailureLogs(t *testing.T, tdb *dbtest.Database) {
	sink := newLogSink()
	bus := newBus(t, tdb.Open(t), "logs", eventbus.WithLogger(sink.logger()),
		eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 2, Interval: 30 * time.Millisecond}))
	must(t, bus.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error {
		return errors.New("downstream unavailable")
	}))
	evt := mustEvent(t, "log-sender", 1)
	must(t, bus.Dispatch(context.Background(), evt))

	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), logCtxKey{}, "trace-42"))
	done := make(chan error, 1)
	go func() { done <- bus.Start(ctx) }()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)

	const retried, dead = "will be retried", "becomes a dead letter"
	waitFor(t, 10*time.Second, "the dead letter", func() bool { n, _ := bus.CountDeadLetters(context.Background()); return n == 1 })
	waitFor(t, 5*time.Second, "the dead letter's log", func() bool { return sink.count(dead) == 1 })
	if n := sink.count(retried); n != 2 {
		t.Errorf("%d retry logs, want 2 (attempts 1 and 2)", n)
	}
	for key, want := range map[string]string{"event_id": evt.ID, "type": evt.Type, "sender": evt.Sender,
		"attempt": "3", "err": "downstream unavailable", "service": "logs", "ctx": "trace-42"} {
		if got := sink.attr(dead, key); got != want {
			t.Errorf("dead-letter log: %s = %q, want %q", key, got, want)
		}
	}
	if got := sink.attr(retried, "attempt"); got != "2" {
		t.Errorf("last retry log: attempt = %q, want 2", got)
	}
	if at, err := time.Parse(time.RFC3339Nano, sink.attr(retried, "retry_at")); err != nil || at.IsZero() {
		t.Errorf("retry log: retry_at %q: %v", sink.attr(retried, "retry_at"), err)
	}
	if got := sink.attr(retried, "ctx"); got != "trace-42" {
		t.Errorf("retry log: context value %q, want trace-42", got)
	}
	// Nothing more is logged once the event is a dead letter.
	stop()
	if n := sink.count(dead); n != 1 {
		t.Errorf("%d dead-letter logs, want 1", n)
	}
}
