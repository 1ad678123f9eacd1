package eventbus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// An instance whose lease was last renewed two thirds of its duration ago
// may be replaced any moment and cannot tell: it must start no event, even
// before its heartbeat's first tick (a poll whose queries stalled reaches
// the handlers with such a lease).
func TestNoEventStartsUnderAStaleLease(t *testing.T) {
	db := dbtest.SQLite(t).Open(t)
	const lease = 1500 * time.Millisecond
	bus, err := eventbus.NewEventBus("stale", db, eventbus.WithLeaseDuration(lease), eventbus.WithCleanCron(""))
	must(t, err)
	var calls atomic.Int64
	must(t, bus.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error {
		calls.Add(1)
		return nil
	}))
	var evts []*ddd.DomainEvent
	for i := range 5 {
		evt, err := ddd.NewDomainEvent("s", payloadN{N: i})
		must(t, err)
		evts = append(evts, evt)
	}
	ctx := context.Background()
	if n := eventbus.HandledUnderLeaseOfAge(ctx, bus, 0, evts); n != len(evts) {
		t.Fatalf("fresh lease: %d of %d events handled", n, len(evts))
	}
	calls.Store(0)
	if n := eventbus.HandledUnderLeaseOfAge(ctx, bus, lease*3/4, evts); n != 0 || calls.Load() != 0 {
		t.Fatalf("stale lease: %d events handled (%d handler calls), want none", n, calls.Load())
	}
}
