package eventbus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// Run with: go test -run '^$' -bench . -benchtime 2000x
// (MySQL and PostgreSQL too when EVENTBUS_MYSQL_DSN / EVENTBUS_POSTGRES_DSN are set).

type benchOrder struct {
	ID     int64 `gorm:"primaryKey;autoIncrement"`
	Amount int
}

type benchPlaced struct {
	OrderID  int64  `json:"order_id"`
	Customer string `json:"customer"`
	Items    []int  `json:"items"`
	Note     string `json:"note"`
}

func quietOptions(extra ...eventbus.Option) []eventbus.Option {
	return append([]eventbus.Option{
		eventbus.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		eventbus.WithCleanCron(""),
		eventbus.WithStartPosition(eventbus.StartFromEarliest),
		eventbus.WithRunInterval(10 * time.Millisecond),
	}, extra...)
}

func benchEvent(b testing.TB, sender string, id int64) *ddd.DomainEvent {
	evt, err := ddd.NewDomainEvent(sender, benchPlaced{OrderID: id, Customer: "customer-42", Items: []int{1, 2, 3}, Note: strings.Repeat("n", 120)})
	if err != nil {
		b.Fatal(err)
	}
	return evt
}

// BenchmarkDispatch: one business transaction per op (insert an order row,
// dispatch events in the same transaction), from 8 concurrent producers.
func BenchmarkDispatch(b *testing.B) {
	for _, target := range dbtest.Targets {
		for _, perTx := range []int{1, 10} {
			b.Run(fmt.Sprintf("%s/events=%d", target.Name, perTx), func(b *testing.B) {
				db := target.New(b).Open(b)
				bus, err := eventbus.NewEventBus("producer", db, quietOptions()...)
				if err != nil {
					b.Fatal(err)
				}
				if err := db.AutoMigrate(&benchOrder{}); err != nil {
					b.Fatal(err)
				}
				var seq atomic.Int64
				b.SetParallelism(4) // 2 cores x 4 = 8 producers
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						err := db.Transaction(func(tx *gorm.DB) error {
							o := &benchOrder{Amount: 1}
							if err := tx.Create(o).Error; err != nil {
								return err
							}
							evts := make([]*ddd.DomainEvent, perTx)
							for i := range evts {
								evts[i] = benchEvent(b, fmt.Sprintf("order-%d", seq.Add(1)%1000), o.ID)
							}
							return bus.Dispatch(ddd.ContextWithTx(context.Background(), tx), evts...)
						})
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
			})
		}
	}
}

// BenchmarkDrain: b.N stored events, one service with a no-op handler; the
// time from Start to the last event handled. The backlog is sequenced
// beforehand, as it is in a running deployment.
func BenchmarkDrain(b *testing.B) {
	for _, target := range dbtest.Targets {
		b.Run(target.Name, func(b *testing.B) {
			tdb := target.New(b)
			db := tdb.Open(b)
			fillBacklog(b, db, b.N, 1000)
			bus, err := eventbus.NewEventBus("drain", tdb.Open(b), quietOptions(eventbus.WithLimitPerRun(1000))...)
			if err != nil {
				b.Fatal(err)
			}
			var handled atomic.Int64
			done := make(chan struct{})
			total := int64(b.N)
			if err := bus.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error {
				if handled.Add(1) == total {
					close(done)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			b.ResetTimer()
			go func() { _ = bus.Start(ctx) }()
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("drained %d of %d", handled.Load(), total)
			}
			b.StopTimer()
			cancel()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// fillBacklog stores n events over senders, in batches, and sequences them.
func fillBacklog(b testing.TB, db *gorm.DB, n, senders int) {
	producer, err := eventbus.NewEventBus("backlog-producer", db, quietOptions()...)
	if err != nil {
		b.Fatal(err)
	}
	for start := 0; start < n; start += 500 {
		var evts []*ddd.DomainEvent
		for i := start; i < min(start+500, n); i++ {
			evts = append(evts, benchEvent(b, fmt.Sprintf("order-%d", i%senders), int64(i)))
		}
		if err := producer.Dispatch(context.Background(), evts...); err != nil {
			b.Fatal(err)
		}
	}
	// A short-lived consumer sequences the backlog (any running instance does).
	if err := producer.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = producer.Start(ctx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var left int64
		if err := db.Raw("SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL").Scan(&left).Error; err != nil {
			b.Fatal(err)
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d events still unsequenced", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
