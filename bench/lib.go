package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
)

// This library's side of the harness.

// backlogChunk is how many events one backlog transaction stores.
const backlogChunk = 500

// libNotify is -lib-notify: eventbus's ListenNotify in every run.
var libNotify = true

var busLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// libOptions are the bus options of every run: defaults, except no cron
// cleaner, the earliest start position and a quiet logger.
func libOptions(extra ...eventbus.Option) []eventbus.Option {
	return append([]eventbus.Option{
		eventbus.WithListenNotify(libNotify),
		eventbus.WithCleanCron(""),
		eventbus.WithStartPosition(eventbus.StartFromEarliest),
		eventbus.WithLogger(busLogger),
	}, extra...)
}

// libBus is a bus instance on a connection pool of its own, as another
// process would have.
type libBus struct {
	*eventbus.EventBus
	db *gorm.DB
}

func newLibBus(t *target, service string, opts ...eventbus.Option) (*libBus, error) {
	db, err := t.openGorm()
	if err != nil {
		return nil, err
	}
	bus, err := eventbus.NewEventBus(service, db, libOptions(opts...)...)
	if err != nil {
		closeGorm(db)
		return nil, fmt.Errorf("new bus %s: %w", service, err)
	}
	return &libBus{EventBus: bus, db: db}, nil
}

func (b *libBus) close() { closeGorm(b.db) }

// start runs the bus until the returned stop is called; stop waits for
// Start to return.
func (b *libBus) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := b.Start(ctx); err != nil {
			busLogger.Error("bench: Start", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}

// libBacklog stores led.size events with Dispatch, backlogChunk per
// transaction, on producers goroutines, and records them in led. Event i is
// sent by senderOf(i, led.senders).
func libBacklog(ctx context.Context, bus *libBus, led *ledger, producers int) error {
	n := led.size
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for range producers {
		wg.Go(func() {
			for {
				start := int(next.Add(backlogChunk)) - backlogChunk
				if start >= n {
					return
				}
				end := min(start+backlogChunk, n)
				evts := make([]*ddd.DomainEvent, 0, end-start)
				for i := start; i < end; i++ {
					s := senderOf(i, led.senders)
					evt, err := ddd.NewDomainEvent(s, newOrder(i, s), ddd.WithEventID(eventID(i)))
					if err != nil {
						errs <- err
						return
					}
					evts = append(evts, evt)
				}
				led.begin(start, end, time.Now())
				if err := bus.Dispatch(ctx, evts...); err != nil {
					errs <- fmt.Errorf("backlog: %w", err)
					return
				}
				led.commit(start, end, time.Now())
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// drainGrace and drainTimeout bound the wait of a drain (see settle): it
// ends drainGrace after the last new event (or the start), at most
// drainTimeout after the start. The grace covers sequencing a cold backlog
// before the first delivery.
const (
	drainGrace   = 30 * time.Second
	drainTimeout = 15 * time.Minute
)

// libDrain starts every bus at once, each with a handler that waits work
// (if any) and records the event in its own tally of led, and waits until
// they have every event (or settle gives up). It returns the start time and
// the tallies (see drainRate).
func libDrain(ctx context.Context, buses []*libBus, led *ledger, work time.Duration) (time.Time, []*tally, error) {
	tallies := make([]*tally, len(buses))
	for i, b := range buses {
		t := newTally(led, false)
		tallies[i] = t
		err := b.RegisterEventHandler(func(_ context.Context, evt *ddd.DomainEvent) error {
			if work > 0 {
				time.Sleep(work)
			}
			t.deliver(evt.ID)
			return nil
		})
		if err != nil {
			return time.Time{}, nil, err
		}
	}
	begin := time.Now()
	var stops []func()
	for _, b := range buses {
		stops = append(stops, b.start(ctx))
	}
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	return begin, tallies, settle(ctx, drainGrace, drainTimeout, tallies...)
}

// errNoPeer marks a scenario the peer cannot run on this database.
var errNoPeer = errors.New("no peer on this database")
