package conformance

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// Gap tests: auto-increment ids become visible in commit order only on
// SQLite. These tests commit events out of id order, roll some back and
// hold transactions open, and check that nothing is skipped or stalled.
func init() {
	register("GapOpenTxCommittedAfterLaterOne", testGapOpenTxCommittedLater)
	register("GapRolledBackTxDoesNotStall", testGapRolledBack)
	register("GapLongTxWithoutEventsDoesNotDelay", testGapLongTxWithoutEvents)
	register("GapLongEventTxDoesNotDelayOthers", testGapLongEventTx)
}

const sqliteOneWriter = "SQLite has one writer at a time: while transaction A is open, B's insert waits for A, so B cannot commit before A and the interleaving cannot arise"

// heldTx begins a transaction on db, dispatches evt in it through bus and
// leaves it open; the test commits or rolls it back (cleanup rolls back).
func heldTx(t testing.TB, db *gorm.DB, bus *eventbus.EventBus, evt *ddd.DomainEvent) *gorm.DB {
	t.Helper()
	tx := db.Begin()
	must(t, tx.Error)
	t.Cleanup(func() { tx.Rollback() })
	must(t, bus.Dispatch(ddd.ContextWithTx(context.Background(), tx), evt))
	return tx
}

func eventPK(t testing.TB, db *gorm.DB, evt *ddd.DomainEvent) int64 {
	t.Helper()
	var id int64
	must(t, db.Raw("SELECT id FROM ddd_events WHERE event_id = ?", evt.ID).Scan(&id).Error)
	if id == 0 {
		t.Fatalf("event %s not found", evt.ID)
	}
	return id
}

func consumedSeq(t testing.TB, db *gorm.DB, service string) int64 {
	t.Helper()
	var seq int64
	must(t, db.Raw("SELECT consumed_seq FROM ddd_services WHERE name = ?", service).Scan(&seq).Error)
	return seq
}

func eventSeq(t testing.TB, db *gorm.DB, evt *ddd.DomainEvent) int64 {
	t.Helper()
	var seq sql.NullInt64
	must(t, db.Raw("SELECT seq FROM ddd_events WHERE event_id = ?", evt.ID).Scan(&seq).Error)
	return seq.Int64
}

// testGapOpenTxCommittedLater: transactions take ids 1..3 and stay open;
// later ones commit first and are delivered, the consumer's offset moves
// past them; then the held ones commit, in reverse order, and must still be
// delivered.
func testGapOpenTxCommittedLater(t *testing.T, tdb *dbtest.Database) {
	if tdb.Dialect == "sqlite" {
		t.Skip(sqliteOneWriter)
	}
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	consumerDB := tdb.Open(t)
	consumer := newBus(t, consumerDB, "gap-consumer")
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(rec.handle))
	start(t, consumer)

	var held []*gorm.DB
	var heldEvts []*ddd.DomainEvent
	for i := range 3 {
		evt := mustEvent(t, fmt.Sprintf("held-%d", i), 0)
		held = append(held, heldTx(t, db, producer, evt))
		heldEvts = append(heldEvts, evt)
	}
	var ids []string
	for i, tx := range slices.Backward(held) {
		// A committed event, taken after every held one, is delivered
		// while they are open: delivery does not wait for them.
		later := mustEvent(t, "later", 2-i)
		must(t, producer.Dispatch(context.Background(), later))
		ids = append(ids, later.ID)
		waitFor(t, 10*time.Second, "the later event while older ones are open", func() bool { return rec.count1(later.ID) })
		waitFor(t, 10*time.Second, "the offset to pass the later event", func() bool {
			return consumedSeq(t, db, "gap-consumer") >= eventSeq(t, db, later)
		})
		must(t, tx.Commit().Error)
		// The interleaving really happened: the held event's id (taken at
		// insert) is lower. Read after the commit: a read of the log inside
		// the held transactions would make them conflict with each other
		// when the session's default is SERIALIZABLE.
		if heldPK, laterPK := eventPK(t, db, heldEvts[i]), eventPK(t, db, later); heldPK >= laterPK {
			t.Fatalf("held event id %d, later event id %d: want held < later", heldPK, laterPK)
		}
		ids = append(ids, heldEvts[i].ID)
		waitFor(t, 10*time.Second, "the held event after its late commit", func() bool { return rec.count1(heldEvts[i].ID) })
	}
	waitFor(t, 10*time.Second, "the offset to reach the head", func() bool { return atHead(t, db, "gap-consumer") })
	rec.checkExactlyOnce(t, ids)
}

// testGapRolledBackTx: a transaction that took an id and rolled back leaves
// a hole that must not hold back the events after it.
func testGapRolledBack(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	consumer := newBus(t, tdb.Open(t), "gap-consumer")
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(rec.handle))
	start(t, consumer)

	var ids []string
	for round := range 3 {
		doomed := mustEvent(t, "doomed", round)
		tx := heldTx(t, db, producer, doomed)
		if tdb.Dialect != "sqlite" { // on SQLite this insert would wait for tx
			evt := mustEvent(t, "kept", 2*round)
			must(t, producer.Dispatch(context.Background(), evt))
			ids = append(ids, evt.ID)
		}
		must(t, tx.Rollback().Error)
		evt := mustEvent(t, "kept", 2*round+1)
		must(t, producer.Dispatch(context.Background(), evt))
		ids = append(ids, evt.ID)
		waitFor(t, 10*time.Second, "the events around the rolled-back one", func() bool { return rec.distinct() == len(ids) })
	}
	waitFor(t, 10*time.Second, "the offset to reach the head", func() bool { return atHead(t, db, "gap-consumer") })
	rec.checkExactlyOnce(t, ids)
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL"); n != 0 {
		t.Fatalf("%d events left unsequenced", n)
	}
}

// testGapLongTxWithoutEvents: transactions that wrote no event stay open
// (holding a snapshot, an xid, row locks) while events are delivered. An
// xmin-based design would stall behind them on PostgreSQL.
func testGapLongTxWithoutEvents(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	consumer := newBus(t, tdb.Open(t), "gap-consumer")
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(rec.handle))
	must(t, db.AutoMigrate(&order{}))
	must(t, db.Create(&order{ID: "unrelated", Amount: 1}).Error)

	other, err := tdb.Open(t).DB()
	must(t, err)
	conn, err := other.Conn(context.Background())
	must(t, err)
	ctx := context.Background()
	exec := func(q string) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	switch tdb.Dialect {
	case "postgres":
		// A snapshot and a transaction id: this holds back the server's xmin.
		exec("BEGIN ISOLATION LEVEL REPEATABLE READ")
		exec("SELECT COUNT(*) FROM ddd_events")
		exec("UPDATE orders SET amount = amount + 1 WHERE id = 'unrelated'")
		var xmin sql.NullString
		if err := conn.QueryRowContext(ctx, "SELECT backend_xmin::text FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&xmin); err != nil || !xmin.Valid {
			t.Fatalf("the held transaction should hold an xmin: %v %v", xmin, err)
		}
	case "mysql":
		// At REPEATABLE READ, as mysqldump --single-transaction: at a
		// SERIALIZABLE session default its read would lock the log.
		exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
		exec("START TRANSACTION WITH CONSISTENT SNAPSHOT")
		exec("SELECT COUNT(*) FROM ddd_events")
		exec("UPDATE orders SET amount = amount + 1 WHERE id = 'unrelated'")
	default:
		// SQLite: a read transaction holding a WAL snapshot (a writing one
		// would hold the single write lock, which stalls every writer by design).
		exec("BEGIN")
		exec("SELECT COUNT(*) FROM ddd_events")
	}
	t.Cleanup(func() { _, _ = conn.ExecContext(context.Background(), "ROLLBACK"); conn.Close() })

	start(t, consumer)
	ids := dispatchN(t, producer, "while-open", 0, 20)
	waitFor(t, 10*time.Second, "events while a transaction without events is open", func() bool { return rec.distinct() == len(ids) })
	// Still open: the probe runs inside it.
	var n int64
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM ddd_events").Scan(&n); err != nil {
		t.Fatalf("the held transaction ended early: %v", err)
	}
	if tdb.Dialect != "sqlite" && n != 0 {
		t.Fatalf("held snapshot sees %d events, want 0 (it began before them)", n)
	}
	rec.checkExactlyOnce(t, ids)
}

// testGapLongEventTx: while a transaction that wrote an event stays open,
// events committed after it are delivered all the same, and about as fast
// as with no open transaction (the delays are logged, not asserted).
func testGapLongEventTx(t *testing.T, tdb *dbtest.Database) {
	if tdb.Dialect == "sqlite" {
		t.Skip(sqliteOneWriter)
	}
	const n = 30
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	consumer := newBus(t, tdb.Open(t), "gap-consumer")
	lat := newLatencies()
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		lat.delivered(evt.ID)
		return rec.handle(ctx, evt)
	}))
	start(t, consumer)
	waitFor(t, 10*time.Second, "the consumer to take its lease", func() bool { return leased(t, db, "gap-consumer") })

	send := func(sender string) []string {
		var ids []string
		for i := range n {
			evt := mustEvent(t, sender, i)
			must(t, producer.Dispatch(context.Background(), evt))
			lat.committed(evt.ID)
			ids = append(ids, evt.ID)
			waitFor(t, 10*time.Second, "delivery", func() bool { return rec.count1(evt.ID) })
		}
		return ids
	}
	ids := send("baseline")
	base := lat.summary(ids)

	long := mustEvent(t, "long", 0)
	tx := heldTx(t, db, producer, long)
	during := send("during")
	ids = append(ids, during...)
	withOpen := lat.summary(during)
	t.Logf("%s: commit-to-delivery of %d events one at a time: no open transaction %s; behind an open event-writing transaction %s",
		tdb.Dialect, n, base, withOpen)

	must(t, tx.Commit().Error)
	ids = append(ids, long.ID)
	waitFor(t, 10*time.Second, "the long transaction's event", func() bool { return rec.count1(long.ID) })
	rec.checkExactlyOnce(t, ids)
}

// atHead reports whether service's offset equals the last sequence number
// and nothing waits to be sequenced.
func atHead(t testing.TB, db *gorm.DB, service string) bool {
	return count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL") == 0 &&
		count(t, db, "SELECT COUNT(*) FROM ddd_services s, ddd_sequencer q WHERE s.name = ? AND s.consumed_seq = q.last_seq", service) == 1
}

// latencies records when each event was committed and first delivered.
type latencies struct {
	mu   sync.Mutex
	at   map[string]time.Time
	took map[string]time.Duration
}

func newLatencies() *latencies {
	return &latencies{at: map[string]time.Time{}, took: map[string]time.Duration{}}
}

func (l *latencies) committed(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.at[id]; !ok {
		l.at[id] = time.Now()
	}
}

func (l *latencies) delivered(id string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.took[id]; ok {
		return
	}
	// A delivery may beat the producer's timestamp (the producer records
	// after Dispatch returns): count it as immediate.
	if at, ok := l.at[id]; ok {
		l.took[id] = now.Sub(at)
	} else {
		l.took[id] = 0
	}
}

func (l *latencies) summary(ids []string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d []time.Duration
	for _, id := range ids {
		d = append(d, l.took[id])
	}
	slices.Sort(d)
	if len(d) == 0 {
		return "no events"
	}
	return fmt.Sprintf("p50 %s, max %s", d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}
