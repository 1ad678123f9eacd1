package conformance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// Server-side prepared statements are a server-wide resource on MySQL:
// past max_prepared_stmt_count (default 16,382) every statement with
// arguments of every client fails with Error 1461. The bus keeps at most
// maxStatementsPerConn prepared per connection of a pool, however many
// buses share the pool (docs/production.md).
func init() {
	register("PreparedStatementsBoundedPerConnection", testPreparedStatementsBounded)
}

// maxStatementsPerConn is the bound documented in docs/production.md.
const maxStatementsPerConn = 20

func testPreparedStatementsBounded(t *testing.T, tdb *dbtest.Database) {
	if tdb.Dialect != "mysql" {
		t.Skip("MySQL only: SQLite has no server, and on PostgreSQL the driver (pgx) prepares and bounds statements by itself")
	}
	for _, buses := range []int{1, 4} {
		t.Run(fmt.Sprintf("buses=%d", buses), func(t *testing.T) {
			perConn := preparedUnderLoad(t, tdb, buses, 20)
			most, total := 0, 0
			for _, n := range perConn {
				most, total = max(most, n), total+n
			}
			t.Logf("%d bus(es) on a pool of 20: %d statements prepared on the server in all, at most %d on one connection (%v)", buses, total, most, perConn)
			if most > maxStatementsPerConn {
				t.Errorf("a connection holds %d prepared statements, want at most %d", most, maxStatementsPerConn)
			}
		})
	}
}

// preparedUnderLoad runs buses services (each consuming, failing some
// events into retries, and producing with every event count from 1 to 20,
// alone and in the caller's transaction) on one pool of conns connections,
// stops them, and returns the statements each connection of the pool has
// open on the server: its session's Com_stmt_prepare minus Com_stmt_close.
// Counting per connection, on the pool's own sessions, is exact whatever
// other tests run on the same server at the same time.
func preparedUnderLoad(t *testing.T, tdb *dbtest.Database, buses, conns int) []int {
	db := openPool(t, tdb, conns)
	var all []*eventbus.EventBus
	var recs []*recorder
	for i := range buses {
		bus := newBus(t, db, fmt.Sprintf("stmt-%d", i), eventbus.WithLimitPerRun(25),
			eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 1}))
		rec := newRecorder()
		rec.fail = func(evt *ddd.DomainEvent) error {
			if evt.Sender == "fails" {
				return errors.New("fails")
			}
			return nil
		}
		must(t, bus.RegisterEventHandler(rec.handle))
		all, recs = append(all, bus), append(recs, rec)
	}
	var stops []func()
	for _, bus := range all {
		stops = append(stops, start(t, bus))
	}

	const producers = 8
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	var want []string
	var mu sync.Mutex
	for p := range producers {
		wg.Go(func() {
			for n := 1; n <= 20; n++ {
				bus := all[(p+n)%len(all)]
				evts := make([]*ddd.DomainEvent, n)
				for i := range evts {
					sender := fmt.Sprintf("p%d", p)
					if i == 0 && n%5 == 0 {
						sender = "fails"
					}
					evt, err := ddd.NewDomainEvent(sender, OrderPlaced{OrderID: sender, N: n*100 + i})
					if err != nil {
						errs <- err
						return
					}
					evts[i] = evt
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				var err error
				if n%2 == 0 {
					err = bus.Dispatch(ctx, evts...)
				} else {
					err = db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
						return bus.Dispatch(ddd.ContextWithTx(ctx, tx), evts...)
					})
				}
				cancel()
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, e := range evts {
					if e.Sender != "fails" {
						want = append(want, e.ID)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("dispatch: %v", err)
	}
	check := tdb.Open(t)
	for _, bus := range all {
		bus.Notify()
	}
	waitFor(t, time.Minute, "every service to finish every event", func() bool {
		return count(t, check, "SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL") == 0 &&
			count(t, check, "SELECT COUNT(*) FROM ddd_services s, ddd_sequencer q WHERE s.consumed_seq = q.last_seq") == int64(buses) &&
			count(t, check, "SELECT COUNT(*) FROM ddd_retries WHERE state = 0") == 0
	})
	for _, stop := range stops {
		stop()
	}
	for _, rec := range recs {
		for _, id := range want {
			if !rec.count1(id) {
				t.Fatalf("event %s not delivered", id)
			}
		}
	}

	// Hold every connection of the pool at once and ask each session.
	sqlDB, err := db.DB()
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var perConn []int
	var c *sql.Conn
	for range conns {
		c, err = sqlDB.Conn(ctx)
		must(t, err)
		defer c.Close()
		var prepared, closed int
		rows, err := c.QueryContext(ctx, "SHOW SESSION STATUS WHERE Variable_name IN ('Com_stmt_prepare', 'Com_stmt_close')")
		must(t, err)
		for rows.Next() {
			var name string
			var v int
			must(t, rows.Scan(&name, &v))
			if name == "Com_stmt_prepare" {
				prepared = v
			} else {
				closed = v
			}
		}
		must(t, rows.Err())
		rows.Close()
		perConn = append(perConn, prepared-closed)
	}
	// Server-wide, for the log: on a server of its own it is the sum above.
	var name string
	var global int
	must(t, c.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'").Scan(&name, &global))
	t.Logf("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count': %d (every client of the server)", global)
	runtime.KeepAlive(all) // their statement cache stays open until measured
	return perConn
}
