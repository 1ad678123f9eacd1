package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("FailureJoinedWithNoHandlerIsRetried", testFailureJoinedWithNoHandler)
}

// testFailureJoinedWithNoHandler (issue 9, item 5): an event is skipped only
// when no handler exists for it. A router whose handlers for a type are a
// failing one and a nested router without a route, and a handler that
// returns errors.Join(failure, ErrNoHandler) itself, both fail: the event
// is retried and becomes a dead letter. An event no handler takes is
// skipped, through the same routers.
func testFailureJoinedWithNoHandler(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	placed := mustEvent(t, "j", 1)
	type Unrouted struct{ X int }
	other, err := ddd.NewDomainEvent("j", Unrouted{X: 1})
	must(t, err)

	routed := newBus(t, db, "joined-router", eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 2}))
	outer, inner, empty := ddd.NewRouter(), ddd.NewRouter(), ddd.NewRouter()
	var routerCalls atomic.Int64
	must(t, outer.Handle(placed.Type, func(context.Context, *ddd.DomainEvent) error {
		routerCalls.Add(1)
		return errors.New("downstream unavailable")
	}))
	must(t, outer.Handle(placed.Type, inner.HandleEvent)) // inner has no route for it
	must(t, outer.Handle(other.Type, empty.HandleEvent))  // nothing takes it anywhere
	must(t, routed.RegisterEventHandler(outer.HandleEvent))

	direct := newBus(t, db, "joined-direct", eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 1}))
	var directCalls atomic.Int64
	must(t, direct.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error {
		directCalls.Add(1)
		return errors.Join(errors.New("downstream unavailable"), fmt.Errorf("wrapped: %w", ddd.ErrNoHandler))
	}))

	must(t, routed.Dispatch(context.Background(), placed, other))
	start(t, routed)
	start(t, direct)
	ctx := context.Background()
	waitFor(t, 20*time.Second, "the dead letters", func() bool {
		a, errA := routed.CountDeadLetters(ctx)
		b, errB := direct.CountDeadLetters(ctx)
		return errA == nil && errB == nil && a == 1 && b == 2 && atHead(t, db, "joined-router") && atHead(t, db, "joined-direct")
	})
	dls, err := routed.DeadLetters(ctx, 0, 10)
	must(t, err)
	if len(dls) != 1 || dls[0].Event.ID != placed.ID || dls[0].Attempts != 3 || !strings.Contains(dls[0].LastError, "downstream unavailable") {
		t.Errorf("router: dead letters %+v, want %s after 3 attempts", dls, placed.ID)
	}
	if n := routerCalls.Load(); n != 3 {
		t.Errorf("router: failing handler called %d times, want 3", n)
	}
	if st := routed.Stats(); st.Skipped != 1 || st.Failed != 3 {
		t.Errorf("router: stats %+v, want the unrouted event skipped and 3 failures", st)
	}
	if n := directCalls.Load(); n != 4 {
		t.Errorf("direct: handler called %d times, want 4 (2 events, 2 attempts each)", n)
	}
	if st := direct.Stats(); st.Skipped != 0 || st.Failed != 4 {
		t.Errorf("direct: stats %+v, want nothing skipped and 4 failures", st)
	}
}
