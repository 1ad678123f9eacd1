package eventbus_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// TestHotQueriesUseIndexes runs EXPLAIN for the poll query, the
// sequencer's queries and the cleaner's candidate query on a log of a few
// thousand events (statistics gathered), and fails on a full scan.
func TestHotQueriesUseIndexes(t *testing.T) {
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			t.Parallel()
			tdb := target.New(t)
			db := tdb.Open(t)
			bus, err := eventbus.NewEventBus("explain", db, eventbus.WithCleanCron(""), eventbus.WithStartPosition(eventbus.StartFromEarliest))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			const sequenced, fresh = 5000, 200
			dispatchBacklog(t, bus, sequenced, 50)
			for {
				n, err := eventbus.SequenceNow(ctx, bus)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
			}
			dispatchBacklog(t, bus, fresh, 50) // committed, not yet sequenced
			sqlDB, err := db.DB()
			if err != nil {
				t.Fatal(err)
			}
			// Every tenth sequenced event is a dead letter of some service.
			if _, err := sqlDB.ExecContext(ctx, "INSERT INTO ddd_retries (service, event_pk, seq, event_id, sender, fifo, state, attempts, next_at, last_error, created_at, updated_at)"+
				" SELECT 'explain', id, seq, event_id, sender, 0, 1, 1, 0, 'failed', 0, 0 FROM ddd_events WHERE seq IS NOT NULL AND id % 10 = 0"); err != nil {
				t.Fatal(err)
			}
			analyze := map[string][]string{
				"sqlite":   {"ANALYZE"},
				"mysql":    {"ANALYZE TABLE ddd_events", "ANALYZE TABLE ddd_retries"},
				"postgres": {"ANALYZE ddd_events", "ANALYZE ddd_retries"},
			}[tdb.Dialect]
			queries := eventbus.IndexedQueries(bus)
			type check struct {
				name, query string
				args        []any
			}
			run := func(cases []check) {
				for _, q := range analyze {
					if _, err := sqlDB.ExecContext(ctx, q); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				for _, c := range cases {
					plan := explain(t, sqlDB, tdb.Dialect, c.query, c.args)
					if bad := fullScan(tdb.Dialect, plan); bad != "" {
						t.Errorf("%s does a full scan (%s):\n%s\nplan:\n%s", c.name, bad, c.query, strings.Join(plan, "\n"))
					} else {
						t.Logf("%s:\n  %s", c.name, strings.Join(plan, "\n  "))
					}
				}
			}
			checks := []check{
				{"poll near the head", queries["fetchEvents"], []any{sequenced - 100, 500}},
				{"poll from the start", queries["fetchEvents"], []any{0, 500}},
				{"cleaner candidates", queries["cleanCandidates"], []any{sequenced - 1000, 0, 500}},
			}
			// The sequencer's probe is a statement of the bus on SQLite and
			// MySQL (on PostgreSQL it is inside a stored procedure, whose
			// work TestSequencerProbeCostIsFlat checks).
			probe, ok := queries["sequencerProbe"]
			if ok {
				checks = append(checks, check{"sequencer probe", probe, nil})
			}
			run(checks)
			if ok {
				// A backlog: the sequencer was down while thousands were written.
				dispatchBacklog(t, bus, 3000, 50)
				run([]check{{"sequencer probe with a backlog", probe, nil}})
			}
		})
	}
}

// explain returns the plan as one line per row (MySQL: column=value pairs).
func explain(t *testing.T, db *sql.DB, dialect, query string, args []any) []string {
	t.Helper()
	prefix := map[string]string{"sqlite": "EXPLAIN QUERY PLAN ", "mysql": "EXPLAIN ", "postgres": "EXPLAIN "}[dialect]
	rows, err := db.Query(prefix+query, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		dest := make([]any, len(cols))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		switch dialect {
		case "sqlite": // id, parent, notused, detail
			out = append(out, vals[len(vals)-1].String)
		case "postgres":
			out = append(out, vals[0].String)
		default:
			var parts []string
			for i, c := range cols {
				parts = append(parts, c+"="+vals[i].String)
			}
			out = append(out, strings.Join(parts, " "))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// fullScan returns what in plan reads a whole table ("" if nothing does).
func fullScan(dialect string, plan []string) string {
	for _, line := range plan {
		switch dialect {
		case "sqlite":
			// "SCAN t" reads every row; "SEARCH t USING INDEX" does not.
			if strings.HasPrefix(line, "SCAN ") {
				return line
			}
		case "postgres":
			if strings.Contains(line, "Seq Scan") {
				return strings.TrimSpace(line)
			}
		default:
			f := map[string]string{}
			for _, kv := range strings.Split(line, " ") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					f[k] = v
				}
			}
			// ALL is a table scan, index a scan of a whole index.
			if f["table"] != "" && (f["type"] == "ALL" || f["type"] == "index" || f["key"] == "") {
				return line
			}
		}
	}
	return ""
}
