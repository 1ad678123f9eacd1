package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

func init() {
	register("CleanerDeletesExactlyWhatNoServiceNeeds", testCleanerModel)
	register("CleanerLeavesNoReusableIDs", testCleanerNoReusableIDs)
	register("CleanerConcurrentWithDispatchAndConsumption", testCleanerConcurrent)
	register("CleanerDeadLetterRetention", testCleanerDeadLetterRetention)
	register("CleanCronSpec", testCleanCronSpec)
}

const twoHours = 2 * 60 * 60 * 1000 // ms

// ageEvents makes log rows look two hours old.
func ageEvents(t testing.TB, db *gorm.DB, ids []string) {
	t.Helper()
	must(t, db.Exec("UPDATE ddd_events SET created_at = created_at - ? WHERE event_id IN ?", twoHours, ids).Error)
}

// logIDs returns the event IDs in the log.
func logIDs(t testing.TB, db *gorm.DB) map[string]bool {
	t.Helper()
	var ids []string
	must(t, db.Raw("SELECT event_id FROM ddd_events").Scan(&ids).Error)
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out
}

func testCleanerModel(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer", eventbus.WithRetentionTime(time.Hour))
	// Three services with different needs: "all" handles everything;
	// "flaky" keeps the events of sender "retry" waiting for a retry and
	// those of "dead" as dead letters; "lag" stops after the first batch.
	all := newBus(t, tdb.Open(t), "all")
	must(t, all.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }))
	start(t, all)
	flaky := newBus(t, tdb.Open(t), "flaky", hourlyRetry)
	must(t, flaky.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error { return failingBySender(evt) }))
	start(t, flaky)
	lag := newBus(t, tdb.Open(t), "lag")
	lagRec := newRecorder()
	must(t, lag.RegisterEventHandler(lagRec.handle))
	stopLag := start(t, lag)

	type logged struct {
		id     string
		sender string
		batch  int
	}
	var events []logged
	dispatch := func(batch int, sender string, from, n int) {
		for _, id := range dispatchN(t, producer, sender, from, n) {
			events = append(events, logged{id, sender, batch})
		}
	}
	dispatch(1, "good", 0, 10)
	dispatch(1, "retry", 0, 2)
	dispatch(1, "dead", 0, 2)
	for _, s := range []string{"all", "flaky", "lag"} {
		waitCaughtUp(t, db, s)
	}
	stopLag()
	dispatch(2, "good", 10, 10)
	dispatch(2, "retry", 2, 1)
	dispatch(2, "dead", 2, 1)

	// Transactions: committed (its events join the log after "lag"
	// stopped), rolled back, pending, unresolved, and a recent committed one.
	begin := func(sender string) context.Context {
		tctx, err := producer.DispatchBegin(ctx, mustEvent(t, sender, 0), mustEvent(t, sender, 1))
		must(t, err)
		return tctx
	}
	committedOld, rolledBackOld, pending, unresolved, committedNew := begin("tx-c"), begin("tx-r"), begin("tx-p"), begin("tx-u"), begin("tx-n")
	must(t, producer.Commit(committedOld))
	must(t, producer.Rollback(rolledBackOld))
	must(t, producer.Commit(committedNew))
	must(t, db.Exec("UPDATE ddd_transactions SET due_at = 0 WHERE id = ?", txIDOf(t, unresolved)).Error)
	if n, err := producer.CheckTransactions(ctx); err != nil || n != 1 { // no checker: unresolved
		t.Fatalf("CheckTransactions = %d, %v; want 1 marked unresolved", n, err)
	}
	for _, s := range []string{"tx-c", "tx-n"} {
		var ids []string
		must(t, db.Raw("SELECT event_id FROM ddd_events WHERE sender = ?", s).Scan(&ids).Error)
		for _, id := range ids {
			events = append(events, logged{id, s, 2})
		}
	}
	waitCaughtUp(t, db, "all")
	waitCaughtUp(t, db, "flaky")

	// Age most of it: events of every kind, and every transaction but the
	// recent one. Keep two "good" events young.
	var old []string
	young := map[string]bool{}
	for i, e := range events {
		if e.sender == "good" && (i == 5 || i == 20) {
			young[e.id] = true
			continue
		}
		old = append(old, e.id)
	}
	ageEvents(t, db, old)
	must(t, db.Exec("UPDATE ddd_transactions SET updated_at = updated_at - ?, created_at = created_at - ? WHERE id <> ?",
		twoHours, twoHours, txIDOf(t, committedNew)).Error)

	// The model: what each service still needs, by what the test did.
	needs := func(e logged) []string {
		var by []string
		if e.batch == 2 {
			by = append(by, "lag") // stopped before these
		}
		if e.sender == "retry" || e.sender == "dead" {
			by = append(by, "flaky") // waiting for a retry, or a dead letter
		}
		return by
	}
	before := logIDs(t, db)
	if len(before) != len(events) {
		t.Fatalf("the log holds %d events, the test dispatched %d", len(before), len(events))
	}
	retriesBefore := count(t, db, "SELECT COUNT(*) FROM ddd_retries")

	rep, err := producer.Clean(ctx)
	must(t, err)
	after := logIDs(t, db)
	deleted := 0
	for _, e := range events {
		needed := needs(e)
		wantKept := young[e.id] || len(needed) > 0
		switch {
		case wantKept && !after[e.id]:
			t.Errorf("event %s (sender %s, batch %d, young %t, needed by %v) was deleted", e.id, e.sender, e.batch, young[e.id], needed)
		case !wantKept && after[e.id]:
			t.Errorf("event %s (sender %s, batch %d) is old and unneeded but was kept", e.id, e.sender, e.batch)
		}
		if !wantKept {
			deleted++
		}
	}
	if deleted == 0 || rep.Events != int64(deleted) {
		t.Errorf("report %+v, want %d events deleted", rep, deleted)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_retries"); n != retriesBefore || rep.DeadLetters != 0 {
		t.Errorf("retries %d -> %d, report %+v: without DeadLetterRetention none may go", retriesBefore, n, rep)
	}
	// Old resolved transactions go; pending, unresolved and recent ones stay
	// with the events they still carry.
	for tctx, want := range map[context.Context]int64{committedOld: 0, rolledBackOld: 0, pending: 1, unresolved: 1, committedNew: 1} {
		if n := count(t, db, "SELECT COUNT(*) FROM ddd_transactions WHERE id = ?", txIDOf(t, tctx)); n != want {
			t.Errorf("transaction %d: %d rows, want %d", txIDOf(t, tctx), n, want)
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transaction_events WHERE tx_id IN ?",
		[]int64{txIDOf(t, pending), txIDOf(t, unresolved)}); n != 4 || rep.Transactions != 2 {
		t.Errorf("%d events of open transactions kept (want 4), report %+v (want 2 transactions)", n, rep)
	}

	// Cleaning again finds nothing more.
	rep, err = producer.Clean(ctx)
	must(t, err)
	if rep != (eventbus.CleanReport{}) {
		t.Errorf("second clean %+v, want nothing", rep)
	}
	// Nothing "lag" needs was lost: restarted, it gets exactly what it missed.
	lag2 := newBus(t, tdb.Open(t), "lag")
	lagRec2 := newRecorder()
	must(t, lag2.RegisterEventHandler(lagRec2.handle))
	start(t, lag2)
	var missed []string
	for _, e := range events {
		if e.batch == 2 {
			missed = append(missed, e.id)
		}
	}
	waitCaughtUp(t, db, "lag")
	lagRec2.checkExactlyOnce(t, missed)
}

func testCleanerNoReusableIDs(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "producer", eventbus.WithRetentionTime(0))
	var recs []*recorder
	for _, name := range []string{"c1", "c2"} {
		bus := newBus(t, tdb.Open(t), name)
		rec := newRecorder()
		must(t, bus.RegisterEventHandler(rec.handle))
		recs = append(recs, rec)
		start(t, bus)
	}
	// More than two cleaning batches.
	var ids []string
	for i := range 11 {
		var evts []*ddd.DomainEvent
		for k := range 100 {
			evts = append(evts, mustEvent(t, senderName(k), i))
		}
		must(t, producer.Dispatch(ctx, evts...))
		ids = append(ids, eventIDs(evts)...)
	}
	tctx, err := producer.DispatchBegin(ctx, mustEvent(t, "tx", 0))
	must(t, err)
	must(t, producer.Commit(tctx))
	ids = append(ids, logIDsOfSender(t, db, "tx")...)
	waitCaughtUp(t, db, "c1")
	waitCaughtUp(t, db, "c2")
	maxID := count(t, db, "SELECT MAX(id) FROM ddd_events")
	maxSeq := count(t, db, "SELECT MAX(seq) FROM ddd_events")
	maxOffset := count(t, db, "SELECT MAX(consumed_seq) FROM ddd_services")
	maxTx := txIDOf(t, tctx)

	rep, err := producer.Clean(ctx)
	must(t, err)
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events"); n != 0 || rep.Events != int64(len(ids)) {
		t.Fatalf("%d events left, report %+v; want the log emptied of %d", n, rep, len(ids))
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_transactions"); n != 0 {
		t.Fatalf("%d transactions left, want 0", n)
	}

	// The emptied tables hand out only new ids, above every stored offset.
	more := dispatchN(t, producer, "after", 0, 5)
	tctx, err = producer.DispatchBegin(ctx, mustEvent(t, "tx-after", 0))
	must(t, err)
	must(t, producer.Commit(tctx))
	more = append(more, logIDsOfSender(t, db, "tx-after")...)
	if id := txIDOf(t, tctx); id <= maxTx {
		t.Fatalf("new transaction id %d, want above %d", id, maxTx)
	}
	waitCaughtUp(t, db, "c1")
	waitCaughtUp(t, db, "c2")
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE id <= ? OR seq <= ? OR seq <= ?", maxID, maxSeq, maxOffset); n != 0 {
		t.Fatalf("%d new events reuse an id <= %d or a seq <= %d (offset %d)", n, maxID, maxSeq, maxOffset)
	}
	for _, rec := range recs {
		rec.checkExactlyOnce(t, append(ids, more...))
	}
}

func logIDsOfSender(t testing.TB, db *gorm.DB, sender string) []string {
	t.Helper()
	var ids []string
	must(t, db.Raw("SELECT event_id FROM ddd_events WHERE sender = ?", sender).Scan(&ids).Error)
	return ids
}

// testCleanerConcurrent cleans continuously from two instances while
// producers dispatch and services consume (one of them retrying): no event
// is lost, and at the end the log empties.
func testCleanerConcurrent(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	steady := newBus(t, tdb.Open(t), "steady", eventbus.WithLimitPerRun(50))
	steadyRec := newRecorder()
	must(t, steady.RegisterEventHandler(steadyRec.handle))
	start(t, steady)
	retrying := newBus(t, tdb.Open(t), "retrying", eventbus.WithLimitPerRun(50),
		eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 5, Interval: 30 * time.Millisecond}))
	retryRec := newRecorder()
	var failed sync.Map
	retryRec.fail = func(evt *ddd.DomainEvent) error {
		var p OrderPlaced
		if err := evt.Decode(&p); err == nil && p.N%5 == 0 {
			if _, again := failed.LoadOrStore(evt.ID, true); !again {
				return errors.New("first attempt fails")
			}
		}
		return nil
	}
	must(t, retrying.RegisterEventHandler(retryRec.handle))
	start(t, retrying)
	// A service registers at its first poll; until then the cleaner owes it
	// nothing, and with RetentionTime 0 it would clean what it never saw.
	for _, s := range []string{"steady", "retrying"} {
		waitFor(t, 10*time.Second, s+" to register", func() bool { return leased(t, db, s) })
	}

	cleanCtx, stopCleaning := context.WithCancel(ctx)
	var cleaners sync.WaitGroup
	var cleaned [2]int64
	for i := range 2 {
		cleaner := newBus(t, tdb.Open(t), "cleaner", eventbus.WithRetentionTime(0))
		cleaners.Go(func() {
			for cleanCtx.Err() == nil {
				rep, err := cleaner.Clean(cleanCtx)
				if err != nil && cleanCtx.Err() == nil {
					t.Errorf("cleaner %d: %v", i, err)
					return
				}
				cleaned[i] += rep.Events
			}
		})
	}
	// Registered after the cleaners' pools, so it runs before they close.
	t.Cleanup(func() { stopCleaning(); cleaners.Wait() })

	const producers, perProducer = 3, 120
	ids := make([][]string, producers)
	var wg sync.WaitGroup
	for p := range producers {
		producer := newBus(t, tdb.Open(t), "producer")
		wg.Go(func() {
			sender := fmt.Sprintf("p%d", p)
			for n := 0; n < perProducer; {
				var evts []*ddd.DomainEvent
				for k := 0; k < 1+n%3 && n+k < perProducer; k++ {
					evts = append(evts, mustEvent(t, sender, n+k))
				}
				var err error
				if n%4 == 0 { // some go through a transactional message
					var tctx context.Context
					if tctx, err = producer.DispatchBegin(ctx, evts...); err == nil {
						err = producer.Commit(tctx)
					}
				} else {
					err = producer.Dispatch(ctx, evts...)
				}
				if err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
				ids[p] = append(ids[p], eventIDs(evts)...)
				n += len(evts)
			}
		})
	}
	wg.Wait()
	var all []string
	for _, l := range ids {
		all = append(all, l...)
	}
	deadline := time.Now().Add(30 * time.Second)
	for steadyRec.distinct() != len(all) || retryRec.distinct() != len(all) {
		if time.Now().After(deadline) {
			explainMissing(t, db, all, map[string]*recorder{"steady": steadyRec, "retrying": retryRec})
			t.Fatalf("timed out waiting for both services to receive all %d events", len(all))
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitCaughtUp(t, db, "steady")
	waitCaughtUp(t, db, "retrying")
	waitFor(t, 10*time.Second, "the retries to finish", func() bool { return count(t, db, "SELECT COUNT(*) FROM ddd_retries") == 0 })
	waitFor(t, 10*time.Second, "the cleaners to empty the log", func() bool { return count(t, db, "SELECT COUNT(*) FROM ddd_events") == 0 })
	stopCleaning()
	cleaners.Wait()
	if cleaned[0]+cleaned[1] != int64(len(all)) {
		t.Errorf("the cleaners reported %d + %d deletions of %d events", cleaned[0], cleaned[1], len(all))
	}
	steadyRec.checkExactlyOnce(t, all)
	// The retrying service: each event once, in any order (a retried normal
	// event does not hold its sender's later ones back).
	retryRec.mu.Lock()
	defer retryRec.mu.Unlock()
	for _, id := range all {
		if retryRec.count[id] != 1 {
			t.Errorf("retrying service got %s %d times", id, retryRec.count[id])
		}
	}
	if len(retryRec.count) != len(all) {
		t.Errorf("retrying service got %d distinct events, want %d", len(retryRec.count), len(all))
	}
}

// testCleanerDeadLetterRetention: off by default; when set, only dead
// letters older than it go, and their events with them in the same run.
func testCleanerDeadLetterRetention(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	bus := newBus(t, db, "dlq", hourlyRetry)
	must(t, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error { return failingBySender(evt) }))
	start(t, bus)
	dead := dispatchN(t, bus, "dead", 0, 2)
	good := dispatchN(t, bus, "good", 0, 2)
	// More old dead letters than one cleaning batch.
	var many []*ddd.DomainEvent
	for i := range 520 {
		many = append(many, mustEvent(t, "dead", 10+i))
	}
	must(t, bus.Dispatch(ctx, many...))
	waitCaughtUp(t, db, "dlq")
	oldDead := append([]string{dead[0]}, eventIDs(many)...)
	ageEvents(t, db, append(append(oldDead, dead[1]), good...))
	must(t, db.Exec("UPDATE ddd_retries SET updated_at = updated_at - ? WHERE event_id IN ?", twoHours, oldDead).Error)

	keepAll := newBus(t, db, "admin", eventbus.WithRetentionTime(time.Hour))
	rep, err := keepAll.Clean(ctx)
	must(t, err)
	if n, _ := bus.CountDeadLetters(ctx); n != 522 || rep.DeadLetters != 0 || rep.Events != 2 {
		t.Fatalf("without DeadLetterRetention: %d dead letters left, report %+v; want all 522 kept and the 2 good events deleted", n, rep)
	}

	withRetention := newBus(t, db, "admin", eventbus.WithRetentionTime(time.Hour), eventbus.WithDeadLetterRetention(time.Hour))
	rep, err = withRetention.Clean(ctx)
	must(t, err)
	left, err := bus.DeadLetters(ctx, 0, 10)
	must(t, err)
	if len(left) != 1 || left[0].Event.ID != dead[1] || rep.DeadLetters != int64(len(oldDead)) {
		t.Fatalf("dead letters left %v, report %+v; want only the recent one", left, rep)
	}
	// The old dead letters' events were needed by nothing else: they go in the same run.
	if ids := logIDs(t, db); len(ids) != 1 || !ids[dead[1]] || rep.Events != int64(len(oldDead)) {
		t.Fatalf("%d events left, report %+v; want only the recent dead letter's event", len(ids), rep)
	}
}

func testCleanCronSpec(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	// Five fields, no seconds field; descriptors allowed.
	for _, spec := range []string{"not a spec", "*/5 * * * * *", "61 * * * *", "* * *", "@every", "@every soon", "@fortnightly"} {
		if _, err := eventbus.NewEventBus("cron", db, fastOptions(eventbus.WithCleanCron(spec))...); !errors.Is(err, eventbus.ErrInvalidOption) {
			t.Errorf("CleanCron %q: err %v, want ErrInvalidOption", spec, err)
		}
	}
	for _, spec := range []string{"", "@daily", "@hourly", "0 3 * * *", "*/15 2-4 * * MON-FRI", "@every 1h30m"} {
		if _, err := eventbus.NewEventBus("cron", db, fastOptions(eventbus.WithCleanCron(spec))...); err != nil {
			t.Errorf("CleanCron %q: %v", spec, err)
		}
	}
	if got := eventbus.DefaultOptions().CleanCron; got != "@daily" {
		t.Errorf("default CleanCron %q, want @daily", got)
	}

	// Start runs the schedule.
	bus := newBus(t, db, "cron", eventbus.WithCleanCron("@every 1s"), eventbus.WithRetentionTime(0))
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	start(t, bus)
	ids := dispatchN(t, bus, "cron", 0, 5)
	waitFor(t, 10*time.Second, "the events", func() bool { return rec.deliveries() >= 5 })
	waitFor(t, 10*time.Second, "the cron job to clean them", func() bool { return count(t, db, "SELECT COUNT(*) FROM ddd_events") == 0 })
	rec.checkExactlyOnce(t, ids)
}

// explainMissing logs, for each event a service has not received, where it
// is: in the log (with its seq), in the retry store, or gone.
func explainMissing(t testing.TB, db *gorm.DB, ids []string, recs map[string]*recorder) {
	t.Helper()
	var services []struct {
		Name        string
		ConsumedSeq int64
		Owner       string
		LeaseUntil  int64
	}
	db.Raw("SELECT name, consumed_seq, owner, lease_until FROM ddd_services").Scan(&services)
	t.Logf("services: %+v, last seq %d, now %s", services, count(t, db, "SELECT last_seq FROM ddd_sequencer"), time.Now())
	for name, rec := range recs {
		rec.mu.Lock()
		var missing []string
		for _, id := range ids {
			if rec.count[id] == 0 {
				missing = append(missing, id)
			}
		}
		rec.mu.Unlock()
		t.Logf("%s misses %d events", name, len(missing))
		for _, id := range missing[:min(5, len(missing))] {
			var ev []struct {
				ID        int64
				Seq       *int64
				CreatedAt int64
			}
			db.Raw("SELECT id, seq, created_at FROM ddd_events WHERE event_id = ?", id).Scan(&ev)
			var rt []struct {
				Service   string
				State     int
				Attempts  int
				NextAt    int64
				LastError string
			}
			db.Raw("SELECT service, state, attempts, next_at, last_error FROM ddd_retries WHERE event_id = ?", id).Scan(&rt)
			t.Logf("  %s: log %+v, retries %+v", id, ev, rt)
		}
	}
}
