package conformance

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

// Operations an operator (and the command-line tool) needs: seek, dead
// letters by filter, transactions waiting for a resolution, lag in time.
func init() {
	register("OpsSeekPositions", testSeekPositions)
	register("OpsSeekKeepsDeadLettersDropsLaterRetries", testSeekRetries)
	register("OpsSeekFencesRunningOwner", testSeekFencesOwner)
	register("OpsDeadLettersByFilter", testDeadLettersByFilter)
	register("OpsTransactionsListed", testTransactionsListed)
	register("OpsLagsGrowWhileStopped", testLagsGrow)
}

// consumeAll starts bus with rec until it has delivered want distinct
// events, then stops it.
func consumeAll(t testing.TB, bus *eventbus.EventBus, rec *recorder, want int) {
	t.Helper()
	stop := start(t, bus)
	waitFor(t, 15*time.Second, fmt.Sprintf("%d distinct deliveries", want), func() bool { return rec.distinct() >= want })
	stop()
}

func testSeekPositions(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "seek-producer")
	bus := newBus(t, db, "seeker")
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	ids := dispatchN(t, producer, "seek-a", 1, 10)
	consumeAll(t, bus, rec, 10)
	head := consumedSeq(t, db, "seeker")

	// Earliest: everything again.
	res, err := bus.SeekService(ctx, "seeker", eventbus.SeekEarliest)
	must(t, err)
	if res.From != head || res.To != 0 {
		t.Fatalf("seek earliest: %+v, want from %d to 0", res, head)
	}
	rec2 := newRecorder()
	bus2 := newBus(t, db, "seeker")
	must(t, bus2.RegisterEventHandler(rec2.handle))
	consumeAll(t, bus2, rec2, 10)
	rec2.checkExactlyOnce(t, ids)

	// After the sequence number of the 7th: the 8th to 10th again.
	seventh := eventSeq(t, db, mustFind(t, db, ids[6]))
	res, err = bus.SeekService(ctx, "seeker", eventbus.SeekAfter(seventh))
	must(t, err)
	if res.To != seventh {
		t.Fatalf("seek after %d: %+v", seventh, res)
	}
	rec3 := newRecorder()
	bus3 := newBus(t, db, "seeker")
	must(t, bus3.RegisterEventHandler(rec3.handle))
	consumeAll(t, bus3, rec3, 3)
	rec3.checkExactlyOnce(t, ids[7:])

	// A point in time: the events stored from then on.
	ageEvents(t, db, ids[:5]) // stored long ago
	cut := time.Now().Add(-time.Hour)
	res, err = bus.SeekService(ctx, "seeker", eventbus.SeekToTime(cut))
	must(t, err)
	if want := eventSeq(t, db, mustFind(t, db, ids[5])) - 1; res.To != want {
		t.Fatalf("seek to %s: %+v, want offset %d (before the first event stored after it)", cut, res, want)
	}
	res, err = bus.SeekService(ctx, "seeker", eventbus.SeekToTime(time.Now().Add(time.Hour)))
	must(t, err)
	if res.To != head {
		t.Fatalf("seek to a time after every event: %+v, want the head %d", res, head)
	}

	// Latest skips what comes before it.
	_, err = bus.SeekService(ctx, "seeker", eventbus.SeekEarliest)
	must(t, err)
	skipped := dispatchN(t, producer, "seek-b", 1, 3)
	sequenceAll(t, db, producer)
	res, err = bus.SeekService(ctx, "seeker", eventbus.SeekLatest)
	must(t, err)
	if want := eventSeq(t, db, mustFind(t, db, skipped[2])); res.From != 0 || res.To != want {
		t.Fatalf("seek latest: %+v, want from 0 to %d", res, want)
	}
	later := dispatchN(t, producer, "seek-c", 1, 2)
	rec4 := newRecorder()
	bus4 := newBus(t, db, "seeker")
	must(t, bus4.RegisterEventHandler(rec4.handle))
	consumeAll(t, bus4, rec4, 2)
	rec4.checkExactlyOnce(t, later)

	// Bad input.
	if _, err := bus.SeekService(ctx, "no-such-service", eventbus.SeekEarliest); !errors.Is(err, eventbus.ErrServiceNotFound) {
		t.Errorf("seek of an unknown service: %v, want ErrServiceNotFound", err)
	}
	if _, err := bus.SeekService(ctx, "seeker", eventbus.SeekAfter(1<<40)); !errors.Is(err, eventbus.ErrInvalidArgument) {
		t.Errorf("seek past the head: %v, want ErrInvalidArgument", err)
	}
	if _, err := bus.SeekService(ctx, "seeker", eventbus.SeekAfter(-1)); !errors.Is(err, eventbus.ErrInvalidArgument) {
		t.Errorf("seek to -1: %v, want ErrInvalidArgument", err)
	}
	if _, err := bus.SeekService(ctx, "bad name!", eventbus.SeekEarliest); !errors.Is(err, eventbus.ErrInvalidServiceName) {
		t.Errorf("seek of an invalid name: %v, want ErrInvalidServiceName", err)
	}
}

// sequenceAll runs bus (a producer: it only sequences) until every event
// in the log has a sequence number.
func sequenceAll(t testing.TB, db *gorm.DB, bus *eventbus.EventBus) {
	t.Helper()
	stop := start(t, bus)
	waitFor(t, 15*time.Second, "every event sequenced", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL") == 0
	})
	stop()
}

// mustFind returns a stand-in event carrying only id, for the lookups by ID.
func mustFind(t testing.TB, db *gorm.DB, id string) *ddd.DomainEvent {
	t.Helper()
	if count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE event_id = ?", id) != 1 {
		t.Fatalf("event %s not in the log", id)
	}
	return &ddd.DomainEvent{ID: id}
}

// testSeekRetries: a seek keeps every dead letter, drops the waiting
// retries whose events the log delivers again, and keeps the others.
func testSeekRetries(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "seekr-producer")
	bus := newBus(t, db, "seekr", eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 5, Interval: time.Hour}))
	must(t, bus.RegisterEventHandler(func(_ context.Context, evt *ddd.DomainEvent) error {
		switch evt.Sender {
		case "dead":
			return ddd.Permanent(errors.New("never"))
		case "retry":
			return errors.New("later")
		}
		return nil
	}))
	dead := dispatchN(t, producer, "dead", 1, 2)
	early := dispatchN(t, producer, "retry", 1, 1)
	mid := dispatchN(t, producer, "ok", 1, 1)
	late := dispatchN(t, producer, "retry", 2, 1)
	stop := start(t, bus)
	waitFor(t, 15*time.Second, "2 dead letters and 2 retries", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_retries WHERE service = 'seekr' AND state = 1") == 2 &&
			count(t, db, "SELECT COUNT(*) FROM ddd_retries WHERE service = 'seekr' AND state = 0") == 2
	})
	stop()
	midSeq := eventSeq(t, db, mustFind(t, db, mid[0]))
	res, err := bus.SeekService(ctx, "seekr", eventbus.SeekAfter(midSeq))
	must(t, err)
	if res.RetriesDropped != 1 {
		t.Errorf("dropped %d retries, want 1 (the one after the new offset)", res.RetriesDropped)
	}
	if got := deadLetterIDs(t, bus); !equalStrings(got, sortedCopy(dead)) {
		t.Errorf("dead letters after seek %v, want %v", got, dead)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_retries WHERE service = 'seekr' AND state = 0 AND event_id = ?", early[0]); n != 1 {
		t.Errorf("the retry before the new offset is gone")
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_retries WHERE service = 'seekr' AND state = 0 AND event_id = ?", late[0]); n != 0 {
		t.Errorf("the retry after the new offset is still stored")
	}
	// Back to the start: every dead letter is still one, even after its
	// event is delivered (and fails) again.
	res, err = bus.SeekService(ctx, "seekr", eventbus.SeekEarliest)
	must(t, err)
	if res.RetriesDropped != 1 {
		t.Errorf("seek to the start dropped %d retries, want 1 (the one left)", res.RetriesDropped)
	}
	if got := deadLetterIDs(t, bus); !equalStrings(got, sortedCopy(dead)) {
		t.Errorf("dead letters after a seek before them %v, want %v", got, dead)
	}
	bus2 := newBus(t, db, "seekr", eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 5, Interval: time.Hour}))
	var redelivered = make(chan string, 16)
	must(t, bus2.RegisterEventHandler(func(_ context.Context, evt *ddd.DomainEvent) error {
		redelivered <- evt.ID
		if evt.Sender == "dead" {
			return ddd.Permanent(errors.New("never"))
		}
		return nil
	}))
	stop = start(t, bus2)
	waitFor(t, 15*time.Second, "the log delivered again", func() bool {
		return consumedSeq(t, db, "seekr") >= eventSeq(t, db, mustFind(t, db, late[0]))
	})
	stop()
	if got := deadLetterIDs(t, bus); !equalStrings(got, sortedCopy(dead)) {
		t.Errorf("dead letters after a second delivery %v, want %v", got, dead)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// testSeekFencesOwner: a seek while the service runs takes the lease away
// from its owner, which goes on from the new offset without a restart.
func testSeekFencesOwner(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "fence-producer")
	obs := &seen{}
	bus := newBus(t, db, "fenced", eventbus.WithObserver(obs))
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	ids := dispatchN(t, producer, "fence", 1, 5)
	start(t, bus)
	waitFor(t, 15*time.Second, "5 deliveries", func() bool { return rec.deliveries() == 5 })
	waitFor(t, 15*time.Second, "offset committed", func() bool {
		return consumedSeq(t, db, "fenced") == eventSeq(t, db, mustFind(t, db, ids[4]))
	})
	var epoch int64
	must(t, db.Raw("SELECT epoch FROM ddd_services WHERE name = 'fenced'").Scan(&epoch).Error)
	_, err := producer.SeekService(ctx, "fenced", eventbus.SeekEarliest)
	must(t, err)
	waitFor(t, 15*time.Second, "10 deliveries after the seek, by the running owner", func() bool { return rec.deliveries() == 10 })
	for _, id := range ids {
		if n := rec.countOf(id); n != 2 {
			t.Errorf("event %s delivered %d times, want 2", id, n)
		}
	}
	var after int64
	must(t, db.Raw("SELECT epoch FROM ddd_services WHERE name = 'fenced'").Scan(&after).Error)
	if after < epoch+2 {
		t.Errorf("epoch %d after the seek, want at least %d (the seek's, then the owner's new lease)", after, epoch+2)
	}
	more := dispatchN(t, producer, "fence", 6, 2)
	waitFor(t, 15*time.Second, "new events after the seek", func() bool { return rec.count1(more[0]) && rec.count1(more[1]) })
	// The owner saw its lease taken and took it again.
	obs.mu.Lock()
	defer obs.mu.Unlock()
	var kinds []eventbus.LeaseChangeKind
	for _, l := range obs.leases {
		kinds = append(kinds, l.Kind)
	}
	if len(kinds) < 3 || kinds[0] != eventbus.LeaseAcquired || kinds[1] != eventbus.LeaseLost || kinds[2] != eventbus.LeaseAcquired ||
		obs.leases[2].Epoch <= obs.leases[0].Epoch || obs.leases[2].Offset != 0 {
		t.Errorf("lease changes %+v: want acquired, lost (the seek), acquired again at offset 0 with a higher epoch", obs.leases)
	}
}

func (r *recorder) countOf(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[id]
}

func testDeadLettersByFilter(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	bus := newBus(t, db, "dlf", eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 0}))
	var mu sync.Mutex
	healed := false
	handled := map[string]int{}
	must(t, bus.RegisterEventHandler(func(_ context.Context, evt *ddd.DomainEvent) error {
		mu.Lock()
		defer mu.Unlock()
		if !healed {
			return errors.New("broken")
		}
		handled[evt.ID]++
		return nil
	}))
	var a, b []string // type OrderPlaced / Refunded
	for i := range 3 {
		a = append(a, dispatchN(t, bus, fmt.Sprintf("s%d", i), 1, 1)...)
		evt, err := ddd.NewDomainEvent(fmt.Sprintf("s%d", i), Refunded{N: i})
		must(t, err)
		must(t, bus.Dispatch(ctx, evt))
		b = append(b, evt.ID)
	}
	stop := start(t, bus)
	waitFor(t, 15*time.Second, "6 dead letters", func() bool {
		n, err := bus.CountDeadLetters(ctx)
		return err == nil && n == 6
	})
	stop()
	list := func(f eventbus.DeadLetterFilter) []string {
		t.Helper()
		dls, err := bus.DeadLettersWhere(ctx, f, 0, 100)
		must(t, err)
		var ids []string
		for _, dl := range dls {
			ids = append(ids, dl.Event.ID)
		}
		sort.Strings(ids)
		return ids
	}
	refunded, err := ddd.TypeName[Refunded]()
	must(t, err)
	checks := []struct {
		name string
		f    eventbus.DeadLetterFilter
		want []string
	}{
		{"all", eventbus.DeadLetterFilter{}, append(append([]string(nil), a...), b...)},
		{"type", eventbus.DeadLetterFilter{Types: []string{refunded}}, b},
		{"sender", eventbus.DeadLetterFilter{Senders: []string{"s1"}}, []string{a[1], b[1]}},
		{"type and sender", eventbus.DeadLetterFilter{Types: []string{refunded}, Senders: []string{"s0", "s2"}}, []string{b[0], b[2]}},
		{"ids", eventbus.DeadLetterFilter{EventIDs: []string{a[0], b[2]}}, []string{a[0], b[2]}},
		{"newer than an hour", eventbus.DeadLetterFilter{NewerThan: time.Hour}, append(append([]string(nil), a...), b...)},
		{"older than an hour", eventbus.DeadLetterFilter{OlderThan: time.Hour}, nil},
	}
	for _, c := range checks {
		if got := list(c.f); !equalStrings(got, sortedCopy(c.want)) {
			t.Errorf("%s: %v, want %v", c.name, got, sortedCopy(c.want))
		}
	}
	// Paging with the same filter.
	first, err := bus.DeadLettersWhere(ctx, eventbus.DeadLetterFilter{}, 0, 4)
	must(t, err)
	rest, err := bus.DeadLettersWhere(ctx, eventbus.DeadLetterFilter{}, first[len(first)-1].Seq, 4)
	must(t, err)
	if len(first) != 4 || len(rest) != 2 {
		t.Errorf("pages of %d and %d, want 4 and 2", len(first), len(rest))
	}
	if _, err := bus.DeadLettersWhere(ctx, eventbus.DeadLetterFilter{OlderThan: -1}, 0, 10); !errors.Is(err, eventbus.ErrInvalidArgument) {
		t.Errorf("negative age: %v, want ErrInvalidArgument", err)
	}

	// Replay one type: exactly those run again, once.
	mu.Lock()
	healed = true
	mu.Unlock()
	n, err := bus.ReplayDeadLettersWhere(ctx, eventbus.DeadLetterFilter{Types: []string{refunded}})
	must(t, err)
	if n != 3 {
		t.Fatalf("replayed %d, want 3", n)
	}
	if n, err := bus.ReplayDeadLettersWhere(ctx, eventbus.DeadLetterFilter{Types: []string{refunded}}); err != nil || n != 0 {
		t.Fatalf("second replay: %d, %v; want 0", n, err)
	}
	stop = start(t, bus)
	waitFor(t, 15*time.Second, "3 replayed events handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 3
	})
	stop()
	mu.Lock()
	for _, id := range b {
		if handled[id] != 1 {
			t.Errorf("replayed event %s handled %d times, want 1", id, handled[id])
		}
	}
	mu.Unlock()
	if got := list(eventbus.DeadLetterFilter{}); !equalStrings(got, sortedCopy(a)) {
		t.Errorf("dead letters after the replay %v, want %v", got, sortedCopy(a))
	}
	// Discard by sender, then everything.
	if n, err := bus.DiscardDeadLettersWhere(ctx, eventbus.DeadLetterFilter{Senders: []string{"s0"}}); err != nil || n != 1 {
		t.Fatalf("discard by sender: %d, %v; want 1", n, err)
	}
	if n, err := bus.DiscardDeadLettersWhere(ctx, eventbus.DeadLetterFilter{}); err != nil || n != 2 {
		t.Fatalf("discard all: %d, %v; want 2", n, err)
	}
}

// Refunded is a second event type for the filter tests.
type Refunded struct {
	N int `json:"n"`
}

func testTransactionsListed(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	// TXCheckTimeout is long: nothing is checked unless CheckTransactions runs.
	bus := newBus(t, db, "txl", eventbus.WithTXCheckTimeout(time.Hour))
	other := newBus(t, db, "txl-other", eventbus.WithTXCheckTimeout(time.Hour))
	begin := func(b *eventbus.EventBus, sender string) int64 {
		t.Helper()
		c, err := b.DispatchBegin(ctx, mustEvent(t, sender, 1), mustEvent(t, sender, 2))
		must(t, err)
		id, _ := eventbus.TxID(c)
		return id
	}
	pending := begin(bus, "p")
	unresolved := begin(bus, "u")
	committed := begin(bus, "c")
	must(t, bus.CommitTransaction(ctx, committed))
	otherPending := begin(other, "o")
	// Mark one unresolved: due now, and no checker registered.
	must(t, db.Exec("UPDATE ddd_transactions SET due_at = 0 WHERE id = ?", unresolved).Error)
	if _, err := bus.CheckTransactions(ctx); err != nil {
		t.Fatal(err)
	}
	txs, err := bus.Transactions(ctx, 0, 100)
	must(t, err)
	if len(txs) != 2 || txs[0].ID != pending || txs[0].State != eventbus.TxPending ||
		txs[1].ID != unresolved || txs[1].State != eventbus.TxUnresolved {
		t.Fatalf("transactions %+v, want %d pending and %d unresolved", txs, pending, unresolved)
	}
	if len(txs[0].Events) != 2 || txs[0].Events[0].Sender != "p" || txs[0].Service != "txl" {
		t.Errorf("pending transaction %+v: want its 2 events", txs[0])
	}
	if txs[1].Checks != 1 || txs[1].LastError == "" {
		t.Errorf("unresolved transaction: %d checks, last error %q", txs[1].Checks, txs[1].LastError)
	}
	only, err := bus.Transactions(ctx, 0, 100, eventbus.TxUnresolved)
	must(t, err)
	if len(only) != 1 || only[0].ID != unresolved {
		t.Errorf("unresolved only: %+v", only)
	}
	page, err := bus.Transactions(ctx, pending, 100)
	must(t, err)
	if len(page) != 1 || page[0].ID != unresolved {
		t.Errorf("after %d: %+v", pending, page)
	}
	if _, err := bus.Transactions(ctx, 0, 100, eventbus.TxCommitted); !errors.Is(err, eventbus.ErrInvalidArgument) {
		t.Errorf("listing committed ones: %v, want ErrInvalidArgument", err)
	}
	got, err := bus.Transaction(ctx, committed)
	must(t, err)
	if got.State != eventbus.TxCommitted || len(got.Events) != 0 {
		t.Errorf("committed transaction %+v", got)
	}
	got, err = bus.Transaction(ctx, otherPending)
	must(t, err)
	if got.Service != "txl-other" || got.State != eventbus.TxPending || len(got.Events) != 2 {
		t.Errorf("another service's transaction %+v", got)
	}
	if _, err := bus.Transaction(ctx, otherPending+1000); !errors.Is(err, eventbus.ErrTxNotFound) {
		t.Errorf("unknown id: %v, want ErrTxNotFound", err)
	}
	counts, err := bus.TransactionCounts(ctx)
	must(t, err)
	want := []eventbus.TxCounts{{Service: "txl", Pending: 1, Unresolved: 1}, {Service: "txl-other", Pending: 1}}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("counts %+v, want %+v", counts, want)
	}
}

// testLagsGrow: a stopped service's lag in time grows; a service that
// consumed everything has none.
func testLagsGrow(t *testing.T, tdb *dbtest.Database) {
	ctx := context.Background()
	db := tdb.Open(t)
	producer := newBus(t, db, "lag-producer")
	idle := newBus(t, db, "lag-idle")
	must(t, idle.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }))
	busy := newBus(t, db, "lag-busy")
	rec := newRecorder()
	must(t, busy.RegisterEventHandler(rec.handle))
	lagOf := func(name string) eventbus.ServiceLag {
		t.Helper()
		lags, err := producer.Lags(ctx)
		must(t, err)
		for _, l := range lags {
			if l.Name == name {
				return l
			}
		}
		t.Fatalf("no lag for %s in %+v", name, lags)
		return eventbus.ServiceLag{}
	}
	if l := lagOf("lag-idle"); !l.Oldest.IsZero() || l.Age != 0 {
		t.Fatalf("lag of a service with nothing to do: %+v", l)
	}
	ids := dispatchN(t, producer, "lag", 1, 3)
	ageEvents(t, db, ids[:1]) // stored an hour ago, not sequenced yet
	first := lagOf("lag-idle")
	if first.Age < 50*time.Minute {
		t.Fatalf("lag of an unsequenced event stored an hour ago: %+v", first)
	}
	sequenceAll(t, db, producer)
	l1 := lagOf("lag-idle")
	waitFor(t, 10*time.Second, "the lag to grow", func() bool { return lagOf("lag-idle").Age > l1.Age })
	if !lagOf("lag-idle").Oldest.Equal(l1.Oldest) {
		t.Errorf("the oldest event of a stopped service changed")
	}
	consumeAll(t, busy, rec, 3)
	if l := lagOf("lag-busy"); !l.Oldest.IsZero() || l.Age != 0 {
		t.Errorf("lag of a service that consumed everything: %+v", l)
	}
}
