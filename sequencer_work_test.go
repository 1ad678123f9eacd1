package eventbus_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// TestSequencerWorkFollowsTheBatch checks that one PostgreSQL sequencer
// batch touches a bounded number of buffers per event it sequences, when the
// planner's statistics say nothing is unsequenced (gathered while the log
// was fully sequenced) and a large backlog then arrives: the case that once
// made each batch rescan its picked rows for every unsequenced row, so that
// its cost grew with the backlog squared. Buffers, not time, so the check
// holds on a busy machine. The batch runs as the sequencer runs it: in a
// transaction at READ COMMITTED.
func TestSequencerWorkFollowsTheBatch(t *testing.T) {
	for _, target := range dbtest.Targets {
		if target.Name != "postgres" {
			continue
		}
		t.Run(target.Name, func(t *testing.T) {
			t.Parallel()
			tdb := target.New(t)
			db := tdb.Open(t)
			bus, err := eventbus.NewEventBus("work", db, eventbus.WithCleanCron(""))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			dispatchBacklog(t, bus, 10000, 50)
			if _, err := eventbus.SequenceNow(ctx, bus); err != nil {
				t.Fatal(err)
			}
			sqlDB, err := db.DB()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sqlDB.ExecContext(ctx, "ANALYZE ddd_events"); err != nil {
				t.Fatal(err)
			}
			const backlog, batch, span = 20000, 5000, 20000
			dispatchBacklog(t, bus, backlog, 50)
			conn, err := sqlDB.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Several calls, so that PL/pgSQL switches to its generic plans.
			for call := 1; call <= 4; call++ {
				var raw string
				if _, err := conn.ExecContext(ctx, "BEGIN ISOLATION LEVEL READ COMMITTED"); err != nil {
					t.Fatal(err)
				}
				if err := conn.QueryRowContext(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM ddd_sequence_step($1, $2)", batch, span).Scan(&raw); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
					t.Fatal(err)
				}
				top := explainJSON(t, raw)
				buffers := top["Shared Hit Blocks"].(float64) + top["Shared Read Blocks"].(float64)
				perEvent := buffers / batch
				t.Logf("call %d: %.0f buffers, %.1f per sequenced event", call, buffers, perEvent)
				if perEvent > 30 {
					t.Errorf("call %d touched %.0f buffers to number %d events (%.1f each): the batch's work grows with the backlog", call, buffers, batch, perEvent)
				}
			}
		})
	}
}

// explainJSON returns the top plan node of EXPLAIN (FORMAT JSON) output.
func explainJSON(t *testing.T, raw string) map[string]any {
	t.Helper()
	var plan []map[string]any
	if err := json.Unmarshal([]byte(raw), &plan); err != nil {
		t.Fatal(err)
	}
	return plan[0]["Plan"].(map[string]any)
}
