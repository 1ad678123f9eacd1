package eventbus_test

import (
	"context"
	"database/sql"
	"sort"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// TestSequencerRunsKeepEveryStraggler follows the sequencer's runs on
// PostgreSQL and MySQL (SQLite has none): a straggler's id becomes a hole
// that the upkeep keeps while its transaction is open; a rolled-back
// transaction's hole is given up; a straggler whose hole was given up
// (expired) is still found, by the sweep. No committed event is ever left
// unsequenced.
func TestSequencerRunsKeepEveryStraggler(t *testing.T) {
	for _, target := range dbtest.Targets {
		if target.Name == "sqlite" {
			continue
		}
		t.Run(target.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := target.New(t).Open(t)
			bus, err := eventbus.NewEventBus("runs", db, quietOptions()...)
			if err != nil {
				t.Fatal(err)
			}
			dispatch := func(tx *gorm.DB) int64 {
				t.Helper()
				evt, err := ddd.NewDomainEvent("runs", benchPlaced{})
				if err != nil {
					t.Fatal(err)
				}
				c, q := ctx, db
				if tx != nil {
					c, q = ddd.ContextWithTx(ctx, tx), tx
				}
				if err := bus.Dispatch(c, evt); err != nil {
					t.Fatal(err)
				}
				var id int64
				if err := q.Raw("SELECT id FROM ddd_events WHERE event_id = ?", evt.ID).Scan(&id).Error; err != nil || id == 0 {
					t.Fatalf("id of %s: %d %v", evt.ID, id, err)
				}
				return id
			}
			sequence := func(want int) {
				t.Helper()
				if n, err := eventbus.SequenceNow(ctx, bus); err != nil || n != want {
					t.Fatalf("sequenced %d, want %d: %v", n, want, err)
				}
			}
			tidy := func(settle, expire, sweep time.Duration) {
				t.Helper()
				if _, err := eventbus.TidyRuns(ctx, bus, settle, expire, sweep); err != nil {
					t.Fatal(err)
				}
			}
			holeOf := func(id int64) bool {
				t.Helper()
				var n int64
				if err := db.Raw("SELECT COUNT(*) FROM ddd_sequencer_runs WHERE version = (SELECT MAX(version) FROM ddd_sequencer_runs)"+
					" AND hi IS NOT NULL AND lo <= ? AND hi >= ?", id, id).Scan(&n).Error; err != nil {
					t.Fatal(err)
				}
				return n == 1
			}
			never, now := time.Hour, time.Duration(0)

			dispatch(nil)
			sequence(1)
			straggler := db.Begin()
			t.Cleanup(func() { straggler.Rollback() })
			stragglerID := dispatch(straggler)
			dispatch(nil)
			sequence(1)
			if !holeOf(stragglerID) {
				t.Fatalf("the straggler's id %d is in no hole", stragglerID)
			}
			tidy(now, never, -1)
			if !holeOf(stragglerID) {
				t.Fatalf("the hole of a transaction still open was given up")
			}

			rolledBack := db.Begin()
			rolledBackID := dispatch(rolledBack)
			dispatch(nil)
			sequence(1)
			must(t, rolledBack.Rollback().Error)
			if !holeOf(rolledBackID) {
				t.Fatalf("the rolled-back id %d is in no hole", rolledBackID)
			}
			must(t, straggler.Commit().Error)
			sequence(1)
			if holeOf(stragglerID) {
				t.Fatalf("the straggler's hole outlived its sequencing")
			}
			// Other tests' transactions on the server may hold back
			// PostgreSQL's settle test for a while.
			deadline := time.Now().Add(60 * time.Second)
			for tidy(now, never, -1); holeOf(rolledBackID); tidy(now, never, -1) {
				if time.Now().After(deadline) {
					t.Fatalf("the hole of a rolled-back transaction was never given up")
				}
				time.Sleep(50 * time.Millisecond)
			}

			late := db.Begin()
			t.Cleanup(func() { late.Rollback() })
			lateID := dispatch(late)
			dispatch(nil)
			sequence(1)
			tidy(never, now, -1) // expired: no committed row in it yet
			if holeOf(lateID) {
				t.Fatalf("an expired hole was kept")
			}
			must(t, late.Commit().Error)
			sequence(0) // no run holds it any more...
			tidy(never, never, 0)
			sequence(1) // ...but the sweep found it
			var left, distinct, total int64
			must(t, db.Raw("SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL").Scan(&left).Error)
			must(t, db.Raw("SELECT COUNT(DISTINCT seq), COUNT(*) FROM ddd_events").Row().Scan(&distinct, &total))
			if left != 0 || distinct != total {
				t.Fatalf("%d events unsequenced, %d distinct numbers for %d events", left, distinct, total)
			}
		})
	}
}

// TestSequencerProbeCostIsFlat: a sequencer step with nothing to sequence
// must cost the same after 20,000 events were sequenced while a REPEATABLE
// READ snapshot stayed open (vacuum and purge can then remove nothing) as
// before. Medians of 200 steps; on PostgreSQL, also the buffers the probe
// touches, which do not depend on the machine's load.
func TestSequencerProbeCostIsFlat(t *testing.T) {
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			ctx := context.Background()
			tdb := target.New(t)
			db := tdb.Open(t)
			bus, err := eventbus.NewEventBus("flat", db, quietOptions()...)
			if err != nil {
				t.Fatal(err)
			}
			dispatchBacklog(t, bus, 100, 10)
			if _, err := eventbus.SequenceNow(ctx, bus); err != nil {
				t.Fatal(err)
			}
			holdSnapshot(t, tdb)
			idle := func() (time.Duration, float64) {
				var ds []time.Duration
				for range 200 {
					start := time.Now()
					if n, _, err := eventbus.SequenceStep(ctx, bus); err != nil || n != 0 {
						t.Fatalf("idle step sequenced %d: %v", n, err)
					}
					ds = append(ds, time.Since(start))
				}
				sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
				work := 0.0
				switch tdb.Dialect {
				case "postgres":
					work = probeBuffers(t, db, eventbus.ProbeStatement(bus))
				case "mysql":
					work = probeReads(t, db, eventbus.IndexedQueries(bus)["sequencerProbe"])
				}
				return ds[len(ds)/2], work
			}
			before, bufBefore := idle()
			for range 20 {
				dispatchBacklog(t, bus, 1000, 50)
				if _, err := eventbus.SequenceNow(ctx, bus); err != nil {
					t.Fatal(err)
				}
			}
			after, bufAfter := idle()
			t.Logf("idle step: %s before, %s after 20,000 events sequenced behind the snapshot; probe work (PostgreSQL buffers, MariaDB handler reads) %.0f, %.0f",
				before, after, bufBefore, bufAfter)
			// The servers' probes are checked by the work they do, which
			// the machine's load does not change; SQLite's, which has no
			// such counter, by time.
			if tdb.Dialect == "sqlite" && after > 2*before+500*time.Microsecond {
				t.Errorf("the idle step went from %s to %s: its cost grows with what was sequenced behind a snapshot", before, after)
			}
			if bufAfter > bufBefore+20 {
				t.Errorf("the probe did %.0f units of work, %.0f before", bufAfter, bufBefore)
			}
		})
	}
}

// probeReads returns the rows and index entries statement reads
// (MariaDB's Handler_read_* session counters), the fewest of three runs.
func probeReads(t *testing.T, db *gorm.DB, statement string) float64 {
	t.Helper()
	if statement == "" {
		t.Fatal("no sequencer probe statement")
	}
	conn := oneConn(t, db)
	reads := func() float64 {
		rows, err := conn.QueryContext(context.Background(), "SHOW SESSION STATUS LIKE 'Handler_read%'")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		sum := 0.0
		for rows.Next() {
			var name string
			var v float64
			if err := rows.Scan(&name, &v); err != nil {
				t.Fatal(err)
			}
			sum += v
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return sum
	}
	fewest := -1.0
	for range 3 {
		// SHOW STATUS itself reads no handler rows; the probe's rows are drained.
		before := reads()
		rows, err := conn.QueryContext(context.Background(), statement)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
		}
		rows.Close()
		if n := reads() - before; fewest < 0 || n < fewest {
			fewest = n
		}
	}
	return fewest
}

// oneConn returns a connection of db's pool, closed when t ends: session
// counters and plans are per connection.
func oneConn(t *testing.T, db *gorm.DB) *sql.Conn {
	t.Helper()
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sqlDB.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// probeBuffers returns the shared buffers statement touches (PostgreSQL),
// the fewest of three runs on one connection: the first run of a
// PL/pgSQL function in a session also reads the catalog to plan it.
func probeBuffers(t *testing.T, db *gorm.DB, statement string) float64 {
	t.Helper()
	conn := oneConn(t, db)
	fewest := -1.0
	for range 3 {
		var raw string
		if err := conn.QueryRowContext(context.Background(), "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+statement).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		plan := explainJSON(t, raw)
		if b := plan["Shared Hit Blocks"].(float64) + plan["Shared Read Blocks"].(float64); fewest < 0 || b < fewest {
			fewest = b
		}
	}
	return fewest
}
