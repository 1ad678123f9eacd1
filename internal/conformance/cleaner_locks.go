package conformance

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// The cleaner and the consumers share the services and retries tables: a
// clean must never wait for a consumer's row locks, nor make a consumer
// wait for its own. (SQLite has one writer at a time: there, a clean's
// batch and an offset commit simply take turns.)
func init() {
	register("CleanerIgnoresLockedServiceAndRetryRows", testCleanerLockedRows)
	register("CleanerDoesNotDelayConsumers", testCleanerDoesNotDelay)
}

const sqliteOneLock = "SQLite locks the whole database, not rows: a clean and a consumer take turns"

// holder is a transaction on a pool of its own that holds row locks
// until released (or the test ends).
type holder struct {
	tx   *gorm.DB
	done bool
}

// holdLocks begins a holder and runs stmts in it; each must lock one row.
func holdLocks(t testing.TB, tdb *dbtest.Database, stmts ...string) *holder {
	t.Helper()
	h := &holder{tx: tdb.Open(t).Begin()}
	must(t, h.tx.Error)
	t.Cleanup(func() { h.release(t) })
	for _, s := range stmts {
		res := h.tx.Exec(s)
		must(t, res.Error)
		if res.RowsAffected != 1 {
			t.Fatalf("%s locked %d rows, want 1", s, res.RowsAffected)
		}
	}
	return h
}

func (h *holder) release(t testing.TB) {
	if !h.done {
		h.done = true
		must(t, h.tx.Rollback().Error)
	}
}

// blocking reports whether a statement of the server starting with prefix
// waits for a lock (on PostgreSQL: for one the holder holds).
func (h *holder) blocking(t testing.TB, db *gorm.DB, dialect, prefix string) bool {
	t.Helper()
	if dialect == "mysql" {
		// The database is the test's own; the holder's statements are done.
		return count(t, db, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND INFO LIKE ?", prefix+"%") > 0
	}
	var pid int64
	must(t, h.tx.Raw("SELECT pg_backend_pid()").Scan(&pid).Error)
	return count(t, db, "SELECT COUNT(*) FROM pg_stat_activity WHERE ? = ANY(pg_blocking_pids(pid)) AND query LIKE ?", pid, prefix+"%") > 0
}

// cleanAsync runs Clean on a goroutine of its own.
func cleanAsync(bus *eventbus.EventBus, timeout time.Duration) <-chan cleanResult {
	out := make(chan cleanResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		r, err := bus.Clean(ctx)
		out <- cleanResult{r, err}
	}()
	return out
}

type cleanResult struct {
	rep eventbus.CleanReport
	err error
}

// testCleanerLockedRows: another transaction holds a consumer's services
// row and one of its retry rows (as an offset commit and a retry phase
// do). Clean finishes at once, deletes every consumed event and keeps the
// one waiting for a retry.
func testCleanerLockedRows(t *testing.T, tdb *dbtest.Database) {
	if tdb.Dialect == "sqlite" {
		t.Skip(sqliteOneLock)
	}
	db := tdb.Open(t)
	producer := newBus(t, db, "producer", eventbus.WithRetentionTime(time.Hour))
	flaky := newBus(t, tdb.Open(t), "flaky", hourlyRetry)
	must(t, flaky.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error { return failingBySender(evt) }))
	stop := start(t, flaky)
	good := dispatchN(t, producer, "good", 0, 10)
	retry := dispatchN(t, producer, "retry", 0, 1)
	waitCaughtUp(t, db, "flaky")
	stop()
	ageEvents(t, db, append(append([]string{}, good...), retry...))

	h := holdLocks(t, tdb,
		"UPDATE ddd_services SET updated_at = updated_at + 1 WHERE name = 'flaky'",
		"UPDATE ddd_retries SET updated_at = updated_at + 1 WHERE service = 'flaky'")
	began := time.Now()
	var res cleanResult
	select {
	case res = <-cleanAsync(producer, 30*time.Second):
	case <-time.After(5 * time.Second):
		h.release(t)
		res = <-cleanAsync(producer, 30*time.Second)
		t.Fatalf("Clean waited for the locked services and retries rows: still running after 5s (%+v, %v once released)", res.rep, res.err)
	}
	must(t, res.err)
	t.Logf("Clean with a locked services row and retry row: %s, %+v", time.Since(began).Round(time.Millisecond), res.rep)
	h.release(t)
	left := logIDs(t, db)
	for _, id := range good {
		if left[id] {
			t.Errorf("consumed event %s not cleaned", id)
		}
	}
	if !left[retry[0]] {
		t.Errorf("event %s waiting for a retry was cleaned", retry[0])
	}
	if res.rep.Events != int64(len(good)) {
		t.Errorf("Clean reported %d events, want %d", res.rep.Events, len(good))
	}
}

// testCleanerDoesNotDelayConsumers: a clean that waits on an event row
// (held by another transaction) must not hold up a consumer: its offset
// commits and lease renewals go on while the clean waits.
func testCleanerDoesNotDelay(t *testing.T, tdb *dbtest.Database) {
	if tdb.Dialect == "sqlite" {
		t.Skip(sqliteOneLock)
	}
	db := tdb.Open(t)
	producer := newBus(t, db, "producer", eventbus.WithRetentionTime(time.Hour))
	live, rec := startRecording(t, tdb.Open(t), "live")
	old := dispatchN(t, producer, "old", 0, 20)
	waitCaughtUp(t, db, "live")
	ageEvents(t, db, old)

	// The clean's DELETE waits on the last of its candidates; by then it
	// has read (on MySQL before the fix: locked) the services rows.
	last := eventPKByID(t, db, old[len(old)-1])
	h := holdLocks(t, tdb, "UPDATE ddd_events SET created_at = created_at - 1 WHERE id = "+itoa64(last))
	// Deadlines are generous (a loaded CI machine); the clean's own is
	// longer than all of them together, so that it is still waiting.
	cleaned := cleanAsync(producer, 3*time.Minute)
	waitFor(t, 30*time.Second, "the clean to wait on the held event row", func() bool {
		return h.blocking(t, db, tdb.Dialect, "DELETE FROM ddd_events")
	})

	leaseBefore := leaseUntil(t, db, "live")
	fresh := dispatchN(t, producer, "fresh", 0, 5)
	live.Notify()
	waitFor(t, 45*time.Second, "the consumer to commit its offset while a clean runs", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_events e, ddd_services s WHERE s.name = 'live'"+
			" AND e.event_id = ? AND e.seq IS NOT NULL AND s.consumed_seq >= e.seq", fresh[len(fresh)-1]) == 1
	})
	waitFor(t, 45*time.Second, "the consumer to renew its lease while a clean runs", func() bool {
		return leaseUntil(t, db, "live") > leaseBefore
	})
	select {
	case res := <-cleaned:
		t.Fatalf("Clean returned while a row it deletes was held: %+v, %v", res.rep, res.err)
	default:
	}
	h.release(t)
	res := <-cleaned
	must(t, res.err)
	if res.rep.Events != int64(len(old)) {
		t.Errorf("Clean deleted %d events, want %d", res.rep.Events, len(old))
	}
	rec.checkExactlyOnce(t, append(old, fresh...))
}

func eventPKByID(t testing.TB, db *gorm.DB, id string) int64 {
	t.Helper()
	return count(t, db, "SELECT id FROM ddd_events WHERE event_id = ?", id)
}

func leaseUntil(t testing.TB, db *gorm.DB, service string) int64 {
	t.Helper()
	return count(t, db, "SELECT lease_until FROM ddd_services WHERE name = ?", service)
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
