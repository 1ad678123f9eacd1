package eventbus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

// TestOperationsQueriesUseIndexes runs EXPLAIN for the queries behind
// Lags, TransactionCounts, Transactions and DeadLettersWhere (what the
// metrics read periodically and the command-line tool runs) on a log of
// 5,000 events with 500 dead letters and 2,000 resolved transactions, and
// fails on a full scan of anything but the services table (one row per
// service, read whole by design).
func TestOperationsQueriesUseIndexes(t *testing.T) {
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
			dispatchBacklog(t, bus, 5000, 50)
			if _, err := eventbus.SequenceNow(ctx, bus); err != nil {
				t.Fatal(err)
			}
			dispatchBacklog(t, bus, 100, 50) // not sequenced yet
			sqlDB, err := db.DB()
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				"INSERT INTO ddd_services (name, consumed_seq, owner, epoch, version, lease_until, created_at, updated_at) VALUES ('explain', 2500, '', 0, 0, 0, 0, 0), ('other', 100, '', 0, 0, 0, 0, 0)",
				"INSERT INTO ddd_retries (service, event_pk, seq, event_id, sender, fifo, state, attempts, next_at, last_error, created_at, updated_at)" +
					" SELECT 'explain', id, seq, event_id, sender, 0, 1, 1, 0, 'failed', 0, 0 FROM ddd_events WHERE seq IS NOT NULL AND id % 10 = 0",
			} {
				if _, err := sqlDB.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			for i := range 2000 {
				c, err := bus.DispatchBegin(ctx, dispatchable(t, i))
				if err != nil {
					t.Fatal(err)
				}
				if i%400 != 0 { // a few stay pending
					if err := bus.Commit(c); err != nil {
						t.Fatal(err)
					}
				}
			}
			analyze := map[string][]string{
				"sqlite":   {"ANALYZE"},
				"mysql":    {"ANALYZE TABLE ddd_events", "ANALYZE TABLE ddd_retries", "ANALYZE TABLE ddd_transactions"},
				"postgres": {"ANALYZE ddd_events", "ANALYZE ddd_retries", "ANALYZE ddd_transactions", "ANALYZE ddd_services"},
			}[tdb.Dialect]
			for _, q := range analyze {
				if _, err := sqlDB.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			for name, q := range eventbus.OpsQueries(bus) {
				query, args := q[0].(string), q[1].([]any)
				plan := explain(t, sqlDB, tdb.Dialect, query, args)
				var scans []string
				for _, line := range plan {
					if bad := fullScan(tdb.Dialect, []string{line}); bad != "" && !scansServices(tdb.Dialect, bad) {
						scans = append(scans, bad)
					}
				}
				if name == "transactions" && !usesIndex(tdb.Dialect, plan, "ddd_transactions_due") {
					scans = append(scans, "transactions_due unused: the primary key is walked in id order")
				}
				if len(scans) > 0 {
					t.Errorf("%s does a full scan (%s):\n%s\nplan:\n%s", name, strings.Join(scans, "; "), query, strings.Join(plan, "\n"))
				} else {
					t.Logf("%s:\n  %s", name, strings.Join(plan, "\n  "))
				}
			}
		})
	}
}

// scansServices reports whether a full-scan plan line reads the services
// table (or SQLite's constant row).
func scansServices(dialect, line string) bool {
	switch dialect {
	case "sqlite":
		// SCAN CONSTANT ROW is the row of a SELECT without FROM.
		return line == "SCAN CONSTANT ROW" || strings.HasPrefix(line, "SCAN ddd_services")
	case "postgres":
		return strings.Contains(line, "ddd_services")
	}
	return strings.Contains(line, "table=ddd_services ")
}

func dispatchable(t testing.TB, i int) *ddd.DomainEvent {
	t.Helper()
	evt, err := ddd.NewDomainEvent(fmt.Sprintf("tx-%d", i), payloadN{N: i})
	if err != nil {
		t.Fatal(err)
	}
	return evt
}

// usesIndex reports whether plan reads through index.
func usesIndex(dialect string, plan []string, index string) bool {
	for _, line := range plan {
		if dialect == "mysql" && strings.Contains(line, " key="+index+" ") ||
			dialect != "mysql" && strings.Contains(line, index) {
			return true
		}
	}
	return false
}
