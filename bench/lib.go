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

var busLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// libOptions are the bus options of every run: defaults, except no cron
// cleaner, the earliest start position and a quiet logger.
func libOptions(extra ...eventbus.Option) []eventbus.Option {
	return append([]eventbus.Option{
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

// libBacklog stores n events with Dispatch, backlogChunk per transaction,
// on producers goroutines. Event i is sent by senderOf(i, senders).
func libBacklog(ctx context.Context, bus *libBus, n, senders, producers int) error {
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
					s := senderOf(i, senders)
					evt, err := ddd.NewDomainEvent(s, newOrder(i, s))
					if err != nil {
						errs <- err
						return
					}
					evts = append(evts, evt)
				}
				if err := bus.Dispatch(ctx, evts...); err != nil {
					errs <- fmt.Errorf("backlog: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// countdown records when the want-th call of hit happens.
type countdown struct {
	want int64
	n    atomic.Int64
	at   atomic.Int64 // UnixNano of the last hit
	done chan struct{}
}

func newCountdown(want int) *countdown {
	return &countdown{want: int64(want), done: make(chan struct{})}
}

func (c *countdown) hit() {
	if c.n.Add(1) == c.want {
		c.at.Store(time.Now().UnixNano())
		close(c.done)
	}
}

// wait returns the time of the last hit, or an error after timeout.
func (c *countdown) wait(ctx context.Context, timeout time.Duration) (time.Time, error) {
	select {
	case <-c.done:
		return time.Unix(0, c.at.Load()), nil
	case <-time.After(timeout):
		return time.Time{}, fmt.Errorf("timed out after %s: %d of %d handled", timeout, c.n.Load(), c.want)
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}

// handlerFor returns a handler that waits work (if any) and counts.
func handlerFor(c *countdown, work time.Duration) ddd.DomainEventHandler {
	return func(ctx context.Context, evt *ddd.DomainEvent) error {
		if work > 0 {
			time.Sleep(work)
		}
		c.hit()
		return nil
	}
}

// libDrain starts every bus at once and returns the time from the start
// until each has handled want events.
func libDrain(ctx context.Context, buses []*libBus, want int, work time.Duration, timeout time.Duration) (time.Duration, error) {
	counts := make([]*countdown, len(buses))
	for i, b := range buses {
		counts[i] = newCountdown(want)
		if err := b.RegisterEventHandler(handlerFor(counts[i], work)); err != nil {
			return 0, err
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
	var last time.Time
	for _, c := range counts {
		at, err := c.wait(ctx, timeout)
		if err != nil {
			return 0, err
		}
		if at.After(last) {
			last = at
		}
	}
	return last.Sub(begin), nil
}

// errNoPeer marks a scenario the peer cannot run on this database.
var errNoPeer = errors.New("no peer on this database")
