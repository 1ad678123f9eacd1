package eventbus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// BenchmarkDrainConcurrency measures how throughput scales inside the one
// instance that owns a service: it drains a backlog of b.N events from 256
// senders with a handler that sleeps 1ms (an I/O-bound handler), for
// several ConsumeConcurrent values, on each available database. Run e.g.
//
//	go test -run '^$' -bench DrainConcurrency -benchtime 3000x
func BenchmarkDrainConcurrency(b *testing.B) {
	for _, target := range dbtest.Targets {
		for _, workers := range []int{1, 4, 16, 64} {
			b.Run(fmt.Sprintf("%s/concurrent=%d", target.Name, workers), func(b *testing.B) {
				tdb := target.New(b)
				db := tdb.Open(b)
				producer := benchBus(b, db, "producer")
				dispatchBacklog(b, producer, b.N, 256)
				consumer := benchBus(b, tdb.Open(b), "drain", eventbus.WithConsumeConcurrent(workers), eventbus.WithLimitPerRun(500))
				var handled atomic.Int64
				if err := consumer.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error {
					time.Sleep(time.Millisecond)
					handled.Add(1)
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				began := time.Now()
				stop := runBus(b, consumer)
				for handled.Load() < int64(b.N) {
					time.Sleep(time.Millisecond)
				}
				elapsed := time.Since(began)
				b.StopTimer()
				stop()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkDeliveryLatency measures commit-to-delivery time of events sent
// one at a time, with no other transaction open and while a transaction
// that wrote an event stays open for the whole run: with the sequencer the
// second must not be slower. Run e.g.
//
//	go test -run '^$' -bench DeliveryLatency -benchtime 200x
func BenchmarkDeliveryLatency(b *testing.B) {
	for _, target := range dbtest.Targets {
		for _, open := range []bool{false, true} {
			name := target.Name + "/idle"
			if open {
				name = target.Name + "/behind-open-event-tx"
			}
			b.Run(name, func(b *testing.B) {
				if open && target.Name == "sqlite" {
					b.Skip("SQLite has one writer: an open writing transaction blocks every other writer")
				}
				tdb := target.New(b)
				db := tdb.Open(b)
				producer := benchBus(b, db, "producer")
				consumer := benchBus(b, tdb.Open(b), "latency")
				var mu sync.Mutex
				delivered := map[string]chan struct{}{}
				wait := func(id string) chan struct{} {
					mu.Lock()
					defer mu.Unlock()
					ch, ok := delivered[id]
					if !ok {
						ch = make(chan struct{})
						delivered[id] = ch
					}
					return ch
				}
				if err := consumer.RegisterEventHandler(func(_ context.Context, evt *ddd.DomainEvent) error {
					close(wait(evt.ID))
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				runBus(b, consumer)
				if open {
					tx := db.Begin()
					b.Cleanup(func() { tx.Rollback() })
					evt, _ := ddd.NewDomainEvent("long", payloadN{N: 0})
					if err := producer.Dispatch(ddd.ContextWithTx(context.Background(), tx), evt); err != nil {
						b.Fatal(err)
					}
				}
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := range b.N {
					evt, _ := ddd.NewDomainEvent("s", payloadN{N: i})
					ch := wait(evt.ID)
					if err := producer.Dispatch(context.Background(), evt); err != nil {
						b.Fatal(err)
					}
					sent := time.Now()
					select {
					case <-ch:
					case <-time.After(30 * time.Second):
						b.Fatalf("event %d not delivered within 30s", i)
					}
					lat = append(lat, time.Since(sent))
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			})
		}
	}
}

// benchBus is a bus with a 20ms poll interval and quiet logs.
func benchBus(b *testing.B, db *gorm.DB, service string, opts ...eventbus.Option) *eventbus.EventBus {
	b.Helper()
	bus, err := eventbus.NewEventBus(service, db, append([]eventbus.Option{
		eventbus.WithRunInterval(20 * time.Millisecond),
		eventbus.WithCleanCron(""),
		eventbus.WithStartPosition(eventbus.StartFromEarliest),
		eventbus.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	return bus
}

// runBus starts bus; the returned stop (also run at cleanup) waits for it.
func runBus(b *testing.B, bus *eventbus.EventBus) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				b.Errorf("Start: %v", err)
			}
		})
	}
	b.Cleanup(stop)
	return stop
}

// payloadN is the payload of the events these tests and benchmarks write.
type payloadN struct{ N int }

// dispatchBacklog writes n events from senders senders, 500 per transaction.
func dispatchBacklog(b testing.TB, bus *eventbus.EventBus, n, senders int) {
	b.Helper()
	for start := 0; start < n; start += 500 {
		var evts []*ddd.DomainEvent
		for i := start; i < min(n, start+500); i++ {
			evt, err := ddd.NewDomainEvent(fmt.Sprintf("sender-%d", i%senders), payloadN{N: i})
			if err != nil {
				b.Fatal(err)
			}
			evts = append(evts, evt)
		}
		if err := bus.Dispatch(context.Background(), evts...); err != nil {
			b.Fatal(err)
		}
	}
}
