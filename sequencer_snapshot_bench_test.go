package eventbus_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// BenchmarkSequencerProbeBehindSnapshot measures a sequencer step as a poll
// runs it, while another connection holds a REPEATABLE READ snapshot open
// (a long report, mysqldump --single-transaction) from before any event was
// sequenced, so that vacuum or purge can remove nothing sequenced since:
// with nothing to sequence (idle), and sequencing one new event (one-event),
// after 0, 20,000 and 40,000 events were sequenced, in batches of 100.
//
//	go test -run '^$' -bench SequencerProbeBehindSnapshot -benchtime 2000x .
func BenchmarkSequencerProbeBehindSnapshot(b *testing.B) {
	for _, target := range dbtest.Targets {
		b.Run(target.Name, func(b *testing.B) {
			ctx := context.Background()
			tdb := target.New(b)
			bus, err := eventbus.NewEventBus("snapshot", tdb.Open(b), quietOptions()...)
			if err != nil {
				b.Fatal(err)
			}
			holdSnapshot(b, tdb)
			sequenced := 0
			for _, upTo := range []int{0, 20000, 40000} {
				for ; sequenced < upTo; sequenced += 100 {
					dispatchBacklog(b, bus, 100, 50)
					if _, err := eventbus.SequenceNow(ctx, bus); err != nil {
						b.Fatal(err)
					}
				}
				b.Run(fmt.Sprintf("sequenced=%d/idle", upTo), func(b *testing.B) {
					for range b.N {
						if n, _, err := eventbus.SequenceStep(ctx, bus); err != nil || n != 0 {
							b.Fatalf("idle step sequenced %d: %v", n, err)
						}
					}
				})
				b.Run(fmt.Sprintf("sequenced=%d/one-event", upTo), func(b *testing.B) {
					for i := range b.N {
						b.StopTimer()
						evt, err := ddd.NewDomainEvent("one", benchPlaced{OrderID: int64(i)})
						if err == nil {
							err = bus.Dispatch(ctx, evt)
						}
						if err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
						if n, _, err := eventbus.SequenceStep(ctx, bus); err != nil || n != 1 {
							b.Fatalf("step sequenced %d of 1: %v", n, err)
						}
					}
					sequenced += b.N
				})
			}
		})
	}
}

// BenchmarkSequencerBacklog: b.N committed events, then the sequencer
// sequences them all, batch after batch, as the first poll after an outage
// does (events sequenced per second).
//
//	go test -run '^$' -bench SequencerBacklog -benchtime 50000x .
func BenchmarkSequencerBacklog(b *testing.B) {
	for _, target := range dbtest.Targets {
		b.Run(target.Name, func(b *testing.B) {
			bus, err := eventbus.NewEventBus("backlog", target.New(b).Open(b), quietOptions()...)
			if err != nil {
				b.Fatal(err)
			}
			dispatchBacklog(b, bus, b.N, 100)
			b.ResetTimer()
			if n, err := eventbus.SequenceNow(context.Background(), bus); err != nil || n != b.N {
				b.Fatalf("sequenced %d of %d: %v", n, b.N, err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// holdSnapshot opens a REPEATABLE READ transaction on a connection of its
// own that has read the events table (SQLite: a read transaction, which
// holds a WAL snapshot), and keeps it open until tb ends.
func holdSnapshot(tb testing.TB, tdb *dbtest.Database) {
	tb.Helper()
	sqlDB, err := tdb.Open(tb).DB()
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		_ = conn.Close()
	})
	begin := map[string]string{
		"postgres": "BEGIN ISOLATION LEVEL REPEATABLE READ",
		"mysql":    "START TRANSACTION WITH CONSISTENT SNAPSHOT",
		"sqlite":   "BEGIN",
	}[tdb.Dialect]
	for _, q := range []string{begin, "SELECT COUNT(*) FROM ddd_events"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
}
