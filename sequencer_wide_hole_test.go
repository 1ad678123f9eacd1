package eventbus_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// TestSequencerWideHoleIsCheap (MySQL): a log sequenced before the runs
// existed (an upgrade; rows written with their seq) leaves, below the first
// batch, one hole that spans every sequenced row. A batch must not read
// those rows: it counts the index reads (Handler_read_*) of one call that
// sequences one event, on a connection of its own. Migration 0007 read the
// hole through the primary key, one read per row in it.
func TestSequencerWideHoleIsCheap(t *testing.T) {
	const old = 20000
	for _, target := range dbtest.Targets {
		if target.Name != "mysql" {
			continue
		}
		t.Run(target.Name, func(t *testing.T) {
			ctx := context.Background()
			db := target.New(t).Open(t)
			bus, err := eventbus.NewEventBus("wide", db, quietOptions()...)
			if err != nil {
				t.Fatal(err)
			}
			dispatchBacklog(t, bus, old, 50)
			// Sequenced as the sequencer before migration 0007 did, which
			// leaves the runs as the migration made them.
			must(t, db.Exec("UPDATE ddd_events SET seq = id").Error)
			must(t, db.Exec("UPDATE ddd_sequencer SET last_seq = (SELECT MAX(id) FROM ddd_events) WHERE id = 1").Error)
			one := func() {
				t.Helper()
				evt, err := ddd.NewDomainEvent("wide", benchPlaced{})
				if err == nil {
					err = bus.Dispatch(ctx, evt)
				}
				must(t, err)
			}
			one()
			if n, err := eventbus.SequenceNow(ctx, bus); err != nil || n != 1 {
				t.Fatalf("sequenced %d of 1: %v", n, err)
			}
			var wide int64
			must(t, db.Raw("SELECT COALESCE(MAX(hi - lo + 1), 0) FROM ddd_sequencer_runs"+
				" WHERE version = (SELECT MAX(version) FROM ddd_sequencer_runs) AND hi IS NOT NULL").Scan(&wide).Error)
			if wide < old {
				t.Fatalf("the widest hole spans %d ids, want at least %d: the test no longer sets up what it measures", wide, old)
			}

			sqlDB, err := db.DB()
			must(t, err)
			conn, err := sqlDB.Conn(ctx)
			must(t, err)
			defer conn.Close()
			one()
			before := handlerReads(t, conn)
			rows, err := conn.QueryContext(ctx, "CALL ddd_sequence(5000)")
			must(t, err)
			var n int64
			var more bool
			for rows.Next() {
				must(t, rows.Scan(&n, &more))
			}
			must(t, rows.Err())
			must(t, rows.Close())
			reads := handlerReads(t, conn) - before
			t.Logf("one batch of %d event(s) behind a hole of %d ids: %d index reads", n, wide, reads)
			if n != 1 {
				t.Fatalf("sequenced %d of 1", n)
			}
			if reads > old/10 {
				t.Errorf("one batch made %d index reads behind a hole of %d sequenced rows: it reads the hole row by row", reads, wide)
			}
		})
	}
}

// handlerReads sums the session's Handler_read_* counters of conn.
func handlerReads(t *testing.T, conn *sql.Conn) int64 {
	t.Helper()
	rows, err := conn.QueryContext(context.Background(), "SHOW SESSION STATUS LIKE 'Handler_read%'")
	must(t, err)
	defer rows.Close()
	var sum int64
	for rows.Next() {
		var name string
		var v int64
		must(t, rows.Scan(&name, &v))
		if strings.HasPrefix(name, "Handler_read") {
			sum += v
		}
	}
	must(t, rows.Err())
	return sum
}
