package eventbus_test

import (
	"context"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// TestSequencerBatchCostIsFlat (PostgreSQL): after 300 batches behind a
// REPEATABLE READ snapshot (vacuum can then remove none of the runs' old
// versions), a batch that sequences one event must read about as few entries
// of the runs' primary key as the first. Migration 0007 deleted the old
// runs as every version up to the current one, a range that read the
// entry of each version deleted before (counted by
// pg_stat_get_xact_tuples_returned, which does not depend on the load).
func TestSequencerBatchCostIsFlat(t *testing.T) {
	const batches = 300
	for _, target := range dbtest.Targets {
		if target.Name != "postgres" {
			continue
		}
		t.Run(target.Name, func(t *testing.T) {
			ctx := context.Background()
			tdb := target.New(t)
			db := tdb.Open(t)
			bus, err := eventbus.NewEventBus("flatbatch", db, quietOptions()...)
			if err != nil {
				t.Fatal(err)
			}
			one := func() {
				t.Helper()
				evt, err := ddd.NewDomainEvent("flatbatch", benchPlaced{})
				if err == nil {
					err = bus.Dispatch(ctx, evt)
				}
				must(t, err)
			}
			sqlDB, err := db.DB()
			must(t, err)
			conn, err := sqlDB.Conn(ctx)
			must(t, err)
			defer conn.Close()
			// Entries of the runs' primary key one batch of one event reads.
			entries := func() int64 {
				t.Helper()
				one()
				var n, read int64
				var more bool
				_, err := conn.ExecContext(ctx, "BEGIN ISOLATION LEVEL READ COMMITTED")
				must(t, err)
				must(t, conn.QueryRowContext(ctx, "SELECT * FROM ddd_sequence_step(5000, 20000)").Scan(&n, &more))
				must(t, conn.QueryRowContext(ctx, "SELECT pg_stat_get_xact_tuples_returned('ddd_sequencer_runs_pkey'::regclass)").Scan(&read))
				_, err = conn.ExecContext(ctx, "COMMIT")
				must(t, err)
				if n != 1 {
					t.Fatalf("sequenced %d of 1", n)
				}
				return read
			}
			one()
			if _, err := eventbus.SequenceNow(ctx, bus); err != nil {
				t.Fatal(err)
			}
			holdSnapshot(t, tdb)
			before := entries()
			for range batches {
				one()
				if n, err := eventbus.SequenceNow(ctx, bus); err != nil || n != 1 {
					t.Fatalf("sequenced %d of 1: %v", n, err)
				}
			}
			after := entries()
			t.Logf("a batch of one event read %d entries of the runs' key, %d after %d batches behind a snapshot", before, after, batches)
			if after > before+batches/10 {
				t.Errorf("a batch of one event read %d entries of the runs' key after %d batches behind a snapshot, %d before", after, batches, before)
			}
		})
	}
}
