// Package storetest is the contract every store implementation passes:
// each operation of internal/store, against a real, migrated database.
// The bus's conformance suite (internal/conformance) tests the bus end to
// end on top; this one pins what the bus relies on of each operation.
package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

// Open returns a store on a fresh, migrated, empty database of its own,
// and a pool of that database for callers' transactions.
type Open func(t *testing.T) (store.Store, *sql.DB)

// Run runs every contract test on stores from open.
func Run(t *testing.T, open Open) {
	for _, c := range []struct {
		name string
		test func(*testing.T, store.Store)
	}{
		{"SequenceGapFreeInOrder", testSequence},
		{"RegisterStartPositions", testRegister},
		{"CommitOffsetFenced", testCommitOffsetFenced},
		{"LeaseTakeRenewRelease", testLease},
		{"RetriesDueRecordedFenced", testRetries},
		{"DeadLettersByExactID", testDeadLetters},
		{"HalfMessageResolveByToken", testHalfMessage},
		{"HalfMessageClaimAndReschedule", testTxClaim},
		{"SeekFencesAndMoves", testSeek},
		{"RemoveServiceOnlyIdle", testRemoveService},
		{"CleanConsumedEvents", testClean},
		{"CallerTxAbsent", testCallerTxAbsent},
		{"PartitionsMembersAndSwitch", testPartitions},
		{"ChangeMarkMoves", testChangeMark},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st, _ := open(t)
			c.test(t, st)
		})
	}
	t.Run("AnnounceInCallerTx", func(t *testing.T) {
		t.Parallel()
		st, db := open(t)
		testAnnounce(t, st, db)
	})
	t.Run("WritesInCallerTx", func(t *testing.T) {
		t.Parallel()
		st, db := open(t)
		testCallerTx(t, st, db)
	})
}

var bg = context.Background()

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func event(t *testing.T, id, sender string, fifo bool) *ddd.DomainEvent {
	t.Helper()
	st := ddd.SendNormal
	if fifo {
		st = ddd.SendFIFO
	}
	return &ddd.DomainEvent{ID: id, Type: "T", Sender: sender, SendType: st, Payload: []byte(`{"n":1}`),
		Metadata: map[string]string{"k": "v"}, CreatedAt: time.UnixMicro(1700000000000001).UTC()}
}

// insert stores n events e1..en (sender s<i%3>, FIFO) and returns them.
func insert(t *testing.T, st store.Store, prefix string, n int) []*ddd.DomainEvent {
	t.Helper()
	evts := make([]*ddd.DomainEvent, n)
	enc := make([]store.EncodedEvent, n)
	for i := range evts {
		evts[i] = event(t, fmt.Sprintf("%s%d", prefix, i+1), fmt.Sprintf("s%d", i%3), true)
		var err error
		enc[i], err = st.EncodeEvent(evts[i])
		must(t, err)
	}
	must(t, st.InsertEvents(bg, nil, enc))
	return evts
}

// sequenceAll runs sequencer steps until nothing waits.
func sequenceAll(t *testing.T, st store.Store) int {
	t.Helper()
	total := 0
	for {
		n, more, err := st.Sequence(bg)
		must(t, err)
		total += n
		if !more {
			return total
		}
	}
}

// eventually retries cond until it holds or 10s pass (the database clock
// must move a millisecond or a lease must lapse).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testSequence(t *testing.T, st store.Store) {
	const n = 120
	evts := insert(t, st, "e", n)
	if got := sequenceAll(t, st); got != n {
		t.Fatalf("sequenced %d, want %d", got, n)
	}
	if got, _, err := st.Sequence(bg); err != nil || got != 0 {
		t.Fatalf("a step with nothing waiting sequenced %d (%v)", got, err)
	}
	recs, err := st.FetchEvents(bg, 0, n+10)
	must(t, err)
	if len(recs) != n {
		t.Fatalf("fetched %d, want %d", len(recs), n)
	}
	first := recs[0].Seq
	for i, r := range recs {
		if r.Seq != first+int64(i) {
			t.Fatalf("seq %d at %d: not gap-free from %d", r.Seq, i, first)
		}
		if i > 0 && r.PK <= recs[i-1].PK {
			t.Fatalf("insert order broken at %d", i)
		}
		want := evts[i]
		if r.Event.ID != want.ID || r.Event.Sender != want.Sender || r.Event.SendType != want.SendType ||
			string(r.Event.Payload) != string(want.Payload) || r.Event.Metadata["k"] != "v" || !r.Event.CreatedAt.Equal(want.CreatedAt) {
			t.Fatalf("event %d read back as %+v, want %+v", i, r.Event, want)
		}
	}
	// After an offset: only what follows it.
	recs, err = st.FetchEvents(bg, first+9, 5)
	must(t, err)
	if len(recs) != 5 || recs[0].Seq != first+10 {
		t.Fatalf("after offset %d: %d records from %v", first+9, len(recs), recs)
	}
}

func testRegister(t *testing.T, st store.Store) {
	insert(t, st, "e", 5)
	sequenceAll(t, st)
	insert(t, st, "f", 3) // committed, not sequenced yet
	must(t, st.RegisterService(bg, "earliest", 0))
	must(t, st.RegisterService(bg, "latest", store.StartLatest))
	must(t, st.RegisterService(bg, "at", 2))
	must(t, st.RegisterService(bg, "at", 4)) // exists: unchanged
	offsets, _, err := st.Offsets(bg)
	must(t, err)
	got := map[string]int64{}
	for _, o := range offsets {
		got[o.Service] = o.Seq
	}
	// latest: after every event committed before the call, sequenced or not.
	if got["earliest"] != 0 || got["at"] != 2 || got["latest"] != 8 {
		t.Fatalf("offsets %v, want earliest 0, at 2, latest 8", got)
	}
}

func lease(svc, owner string, epoch int64) store.LeaseParams {
	return store.LeaseParams{Service: svc, Owner: owner, Epoch: epoch, LeaseMillis: 60_000}
}

func testCommitOffsetFenced(t *testing.T, st store.Store) {
	insert(t, st, "e", 10)
	sequenceAll(t, st)
	must(t, st.RegisterService(bg, "svc", 0))
	short := store.LeaseParams{Service: "svc", Owner: "a", LeaseMillis: 1}
	la, ok, err := st.AcquireLease(bg, short)
	must(t, err)
	if !ok || la.Offset != 0 {
		t.Fatalf("first acquire: ok %t, offset %d", ok, la.Offset)
	}
	must(t, st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lease("svc", "a", la.Epoch), Offset: 3}))
	// a's lease (60s now) is taken over only once it lapses: shorten it.
	must(t, st.RenewLease(bg, store.LeaseParams{Service: "svc", Owner: "a", Epoch: la.Epoch, LeaseMillis: 1}))
	var lb store.Lease
	eventually(t, "b takes the lapsed lease", func() bool {
		var ok bool
		lb, ok, err = st.AcquireLease(bg, lease("svc", "b", 0))
		must(t, err)
		return ok
	})
	if lb.Epoch <= la.Epoch || lb.Offset != 3 {
		t.Fatalf("b's lease: epoch %d (a's %d), offset %d (want 3)", lb.Epoch, la.Epoch, lb.Offset)
	}
	// a is fenced out: its commit and renewal fail, and change nothing.
	stale := store.CommitOffsetParams{LeaseParams: lease("svc", "a", la.Epoch), Offset: 9,
		Retries: []store.NewRetry{{Record: store.Record{PK: 1, Seq: 1, Event: event(t, "e1", "s0", true)}, Attempts: 1}}}
	if err := st.CommitOffset(bg, stale); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale commit: %v, want ErrLeaseLost", err)
	}
	if err := st.RenewLease(bg, lease("svc", "a", la.Epoch)); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale renewal: %v, want ErrLeaseLost", err)
	}
	due, err := st.DueRetries(bg, store.DueRetriesParams{Service: "svc", Limit: 10})
	must(t, err)
	if len(due) != 0 {
		t.Fatalf("a fenced-out commit stored %d retries", len(due))
	}
	// b commits; the offset never moves back.
	must(t, st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lease("svc", "b", lb.Epoch), Offset: 5}))
	if err := st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lease("svc", "b", lb.Epoch), Offset: 4}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("commit backwards: %v, want ErrLeaseLost", err)
	}
	offsets, _, err := st.Offsets(bg)
	must(t, err)
	if len(offsets) != 1 || offsets[0].Seq != 5 {
		t.Fatalf("offsets %v, want svc at 5", offsets)
	}
}

func testLease(t *testing.T, st store.Store) {
	must(t, st.RegisterService(bg, "svc", 0))
	la, ok, err := st.AcquireLease(bg, lease("svc", "a", 0))
	must(t, err)
	if !ok {
		t.Fatal("a could not take a free lease")
	}
	if _, ok, err := st.AcquireLease(bg, lease("svc", "b", 0)); err != nil || ok {
		t.Fatalf("b took a live lease (ok %t, %v)", ok, err)
	}
	must(t, st.RenewLease(bg, lease("svc", "a", la.Epoch)))
	// The owner takes its own lease again, under a new epoch.
	la2, ok, err := st.AcquireLease(bg, lease("svc", "a", 0))
	must(t, err)
	if !ok || la2.Epoch <= la.Epoch {
		t.Fatalf("re-acquire by owner: ok %t, epoch %d after %d", ok, la2.Epoch, la.Epoch)
	}
	must(t, st.ReleaseLease(bg, "svc", "a"))
	if _, ok, err := st.AcquireLease(bg, lease("svc", "b", 0)); err != nil || !ok {
		t.Fatalf("b could not take a released lease (ok %t, %v)", ok, err)
	}
	// Standby presence; an unknown service has no row.
	if ok, err := st.ReportStandby(bg, "svc", 60_000); err != nil || !ok {
		t.Fatalf("standby of svc: exists %t, %v", ok, err)
	}
	if ok, err := st.ReportStandby(bg, "svc", 60_000); err != nil || !ok {
		t.Fatalf("standby of svc, twice at once: exists %t, %v", ok, err)
	}
	if ok, err := st.ReportStandby(bg, "gone", 60_000); err != nil || ok {
		t.Fatalf("standby of an unknown service: exists %t, %v", ok, err)
	}
}

// leased registers svc at offset 0 over n sequenced events and takes its lease.
func leased(t *testing.T, st store.Store, n int) (store.LeaseParams, []store.Record) {
	t.Helper()
	insert(t, st, "e", n)
	sequenceAll(t, st)
	must(t, st.RegisterService(bg, "svc", 0))
	l, ok, err := st.AcquireLease(bg, lease("svc", "a", 0))
	must(t, err)
	if !ok {
		t.Fatal("no lease")
	}
	recs, err := st.FetchEvents(bg, 0, n)
	must(t, err)
	return lease("svc", "a", l.Epoch), recs
}

func testRetries(t *testing.T, st store.Store) {
	lp, recs := leased(t, st, 6)
	// e1 failed (retry now), e2 dead, e4 parked behind e1 (same sender, FIFO).
	retries := []store.NewRetry{
		{Record: recs[0], Attempts: 1, LastError: "boom"},
		{Record: recs[1], Dead: true, Attempts: 3, LastError: "dead"},
		{Record: recs[3]},
	}
	must(t, st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lp, Offset: recs[5].Seq, Retries: retries}))
	// Redone after an unknown outcome: existing rows are kept as they are.
	must(t, st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lp, Offset: recs[5].Seq, Retries: retries}))
	due, err := st.DueRetries(bg, store.DueRetriesParams{Service: "svc", Limit: 10})
	must(t, err)
	if len(due) != 1 || due[0].Event.ID != recs[0].Event.ID || due[0].Attempts != 1 {
		t.Fatalf("due %v, want e1 alone (e4 waits behind it)", due)
	}
	blocked, err := st.BlockedSenders(bg, "svc", []string{"s0", "s1", "s2"})
	must(t, err)
	if len(blocked) != 1 || blocked[0] != "s0" {
		t.Fatalf("blocked senders %v, want [s0]", blocked)
	}
	if due, err := st.DueRetries(bg, store.DueRetriesParams{Service: "svc", Exclude: []string{"s0"}, Limit: 10}); err != nil || len(due) != 0 {
		t.Fatalf("due without s0: %v (%v)", due, err)
	}
	// A stale fence records nothing.
	stale := store.RecordRetriesParams{LeaseParams: lp, Done: []int64{recs[0].PK}}
	stale.Epoch--
	if err := st.RecordRetries(bg, stale); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale record: %v, want ErrLeaseLost", err)
	}
	// e1 succeeds: e4 is due next.
	must(t, st.RecordRetries(bg, store.RecordRetriesParams{LeaseParams: lp, Done: []int64{recs[0].PK}}))
	due, err = st.DueRetries(bg, store.DueRetriesParams{Service: "svc", Limit: 10})
	must(t, err)
	if len(due) != 1 || due[0].Event.ID != recs[3].Event.ID {
		t.Fatalf("due %v, want e4", due)
	}
	// e4 fails for good.
	must(t, st.RecordRetries(bg, store.RecordRetriesParams{LeaseParams: lp,
		Failed: []store.RetryOutcome{{PK: recs[3].PK, Dead: true, Attempts: 1, LastError: "no"}}}))
	n, err := st.CountDeadLetters(bg, "svc")
	must(t, err)
	if n != 2 {
		t.Fatalf("%d dead letters, want 2", n)
	}
}

func testDeadLetters(t *testing.T, st store.Store) {
	lp, recs := leased(t, st, 12) // ids e1..e12: e1 is a prefix of e10..e12
	var rows []store.NewRetry
	for _, r := range recs {
		rows = append(rows, store.NewRetry{Record: r, Dead: true, Attempts: 2, LastError: "x"})
	}
	must(t, st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lp, Offset: recs[11].Seq, Retries: rows}))
	list, err := st.ListDeadLetters(bg, store.DeadLetterQuery{Service: "svc", After: recs[4].Seq, Limit: 3})
	must(t, err)
	if len(list) != 3 || list[0].Seq != recs[5].Seq || list[0].Attempts != 2 || list[0].LastError != "x" || list[0].Event.ID != "e6" {
		t.Fatalf("page after e5: %+v", list)
	}
	filtered, err := st.ListDeadLetters(bg, store.DeadLetterQuery{Service: "svc", Filter: store.DeadLetterFilter{Senders: []string{"s1"}}, After: -1, Limit: 100})
	must(t, err)
	if len(filtered) != 4 {
		t.Fatalf("%d dead letters of sender s1, want 4", len(filtered))
	}
	// By exact id: e1 only, not e10..e12.
	n, err := st.ReplayDeadLetters(bg, "svc", []string{"e1", "nope"})
	must(t, err)
	if n != 1 {
		t.Fatalf("replayed %d, want 1", n)
	}
	due, err := st.DueRetries(bg, store.DueRetriesParams{Service: "svc", Limit: 100})
	must(t, err)
	if len(due) != 1 || due[0].Event.ID != "e1" || due[0].Attempts != 0 {
		t.Fatalf("due after replay: %+v", due)
	}
	if n, err := st.ReplayDeadLetters(bg, "svc", []string{"e1"}); err != nil || n != 0 {
		t.Fatalf("replay of a replayed one: %d (%v)", n, err)
	}
	if n, err := st.DiscardDeadLetters(bg, "svc", []string{"e10"}); err != nil || n != 1 {
		t.Fatalf("discard e10: %d (%v)", n, err)
	}
	if n, err := st.DiscardDeadLettersWhere(bg, "svc", store.DeadLetterFilter{EventIDs: []string{"e11", "e12"}}); err != nil || n != 2 {
		t.Fatalf("discard where e11, e12: %d (%v)", n, err)
	}
	if n, err := st.ReplayDeadLettersWhere(bg, "svc", store.DeadLetterFilter{}); err != nil || n != 8 {
		t.Fatalf("replay the rest: %d (%v), want 8", n, err)
	}
	if n, err := st.CountDeadLetters(bg, "svc"); err != nil || n != 0 {
		t.Fatalf("%d dead letters left (%v)", n, err)
	}
}

func encodeAll(t *testing.T, st store.Store, evts ...*ddd.DomainEvent) []store.EncodedEvent {
	t.Helper()
	out := make([]store.EncodedEvent, len(evts))
	for i, e := range evts {
		var err error
		out[i], err = st.EncodeEvent(e)
		must(t, err)
	}
	return out
}

func testHalfMessage(t *testing.T, st store.Store) {
	evts := []*ddd.DomainEvent{event(t, "h1", "s", true), event(t, "h2", "s", true)}
	id, err := st.BeginTx(bg, nil, store.BeginTxParams{Service: "svc", Token: 77, DueMillis: 60_000, Events: encodeAll(t, st, evts...)})
	must(t, err)
	got, err := st.TxEvents(bg, id)
	must(t, err)
	if len(got) != 2 || got[0].ID != "h1" || got[1].ID != "h2" {
		t.Fatalf("pending events %v", got)
	}
	row, found, err := st.Tx(bg, id)
	must(t, err)
	if !found || row.State != store.TxPending || row.Service != "svc" {
		t.Fatalf("stored %+v (found %t)", row, found)
	}
	// Another token (the id handed out again) resolves nothing.
	out, err := st.ResolveTx(bg, store.ResolveTxParams{ID: id, Service: "svc", Token: 78, State: store.TxCommitted})
	must(t, err)
	if out.Resolved || !out.Found || out.Token != 77 || out.State != store.TxPending {
		t.Fatalf("wrong token: %+v", out)
	}
	// Another service resolves nothing either.
	if out, err := st.ResolveTx(bg, store.ResolveTxParams{ID: id, Service: "other", State: store.TxCommitted}); err != nil || out.Resolved || out.Service != "svc" {
		t.Fatalf("other service: %+v (%v)", out, err)
	}
	out, err = st.ResolveTx(bg, store.ResolveTxParams{ID: id, Service: "svc", Token: 77, State: store.TxCommitted})
	must(t, err)
	if !out.Resolved {
		t.Fatalf("right token: %+v", out)
	}
	out, err = st.ResolveTx(bg, store.ResolveTxParams{ID: id, Service: "svc", Token: 77, State: store.TxRolledBack})
	must(t, err)
	if out.Resolved || out.State != store.TxCommitted {
		t.Fatalf("second resolution: %+v", out)
	}
	// Published: in the log, in order, once sequenced.
	sequenceAll(t, st)
	recs, err := st.FetchEvents(bg, 0, 10)
	must(t, err)
	if len(recs) != 2 || recs[0].Event.ID != "h1" || recs[1].Event.ID != "h2" {
		t.Fatalf("log after commit: %v", recs)
	}
	// Unknown id: not found, below no watermark.
	out, err = st.ResolveTx(bg, store.ResolveTxParams{ID: id + 1000, Service: "svc", State: store.TxRolledBack})
	must(t, err)
	if out.Resolved || out.Found || out.Watermark != 0 {
		t.Fatalf("unknown id: %+v", out)
	}
	// Rolled back: nothing published.
	id2, err := st.BeginTx(bg, nil, store.BeginTxParams{Service: "svc", Token: 5, DueMillis: 60_000, Events: encodeAll(t, st, event(t, "h3", "s", false))})
	must(t, err)
	if out, err := st.ResolveTx(bg, store.ResolveTxParams{ID: id2, Service: "svc", State: store.TxRolledBack}); err != nil || !out.Resolved {
		t.Fatalf("rollback by id: %+v (%v)", out, err)
	}
	if n := sequenceAll(t, st); n != 0 {
		t.Fatalf("a rollback published %d events", n)
	}
}

func testTxClaim(t *testing.T, st store.Store) {
	id, err := st.BeginTx(bg, nil, store.BeginTxParams{Service: "svc", Token: 1, DueMillis: 0, Events: encodeAll(t, st, event(t, "c1", "s", false))})
	must(t, err)
	var due []store.DueTx
	eventually(t, "the transaction falls due", func() bool {
		due, err = st.DueTxs(bg, "svc", 10)
		must(t, err)
		return len(due) == 1
	})
	if due[0].ID != id || due[0].Checks != 0 {
		t.Fatalf("due %+v", due)
	}
	if ok, err := st.ClaimTx(bg, id, 0, 60_000); err != nil || !ok {
		t.Fatalf("claim: %t (%v)", ok, err)
	}
	if ok, err := st.ClaimTx(bg, id, 0, 60_000); err != nil || ok {
		t.Fatalf("second claim with the same count: %t (%v)", ok, err)
	}
	if ok, err := st.RescheduleTx(bg, store.RescheduleTxParams{ID: id, Claim: 2, State: store.TxPending, Reason: "?"}); err != nil || ok {
		t.Fatalf("reschedule under another claim: %t (%v)", ok, err)
	}
	if ok, err := st.RescheduleTx(bg, store.RescheduleTxParams{ID: id, Claim: 1, State: store.TxUnresolved, Reason: "gave up"}); err != nil || !ok {
		t.Fatalf("reschedule under its claim: %t (%v)", ok, err)
	}
	n, err := st.CountUnresolvedTxs(bg, "svc")
	must(t, err)
	rows, err := st.ListTxs(bg, store.TxListParams{Service: "svc", States: []store.TxState{store.TxUnresolved}, After: 0, Limit: 10})
	must(t, err)
	if n != 1 || len(rows) != 1 || rows[0].LastError != "gave up" || rows[0].Checks != 1 {
		t.Fatalf("unresolved: count %d, rows %+v", n, rows)
	}
	pending, unresolved, err := st.TxCounts(bg, "svc")
	must(t, err)
	name, ok, err := st.NextTxService(bg, "")
	must(t, err)
	if pending != 0 || unresolved != 1 || !ok || name != "svc" {
		t.Fatalf("counts %d/%d, next service %q %t", pending, unresolved, name, ok)
	}
	if _, ok, err := st.NextTxService(bg, "svc"); err != nil || ok {
		t.Fatalf("a service after the last: %t (%v)", ok, err)
	}
	// An operator resolves an unresolved one.
	if out, err := st.ResolveTx(bg, store.ResolveTxParams{ID: id, Service: "svc", State: store.TxCommitted}); err != nil || !out.Resolved {
		t.Fatalf("resolve unresolved: %+v (%v)", out, err)
	}
}

func testSeek(t *testing.T, st store.Store) {
	lp, recs := leased(t, st, 8)
	must(t, st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lp, Offset: recs[7].Seq,
		Retries: []store.NewRetry{{Record: recs[2], Attempts: 1}, {Record: recs[6], Attempts: 1}}}))
	var sawFrom, sawHead int64
	out, found, err := st.Seek(bg, store.SeekParams{Service: "svc", Target: func(from, head int64) (int64, error) {
		sawFrom, sawHead = from, head
		return recs[4].Seq, nil
	}})
	must(t, err)
	if !found || sawFrom != recs[7].Seq || sawHead != recs[7].Seq || out.From != recs[7].Seq || out.To != recs[4].Seq || out.RetriesDropped != 1 {
		t.Fatalf("seek: %+v (found %t, target saw %d/%d)", out, found, sawFrom, sawHead)
	}
	// The owner is fenced out.
	if err := st.RenewLease(bg, lp); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("owner after a seek: %v, want ErrLeaseLost", err)
	}
	// A target's error rolls the seek back.
	refuse := errors.New("refused")
	if _, _, err := st.Seek(bg, store.SeekParams{Service: "svc", Target: func(int64, int64) (int64, error) { return 0, refuse }}); !errors.Is(err, refuse) {
		t.Fatalf("refused seek: %v", err)
	}
	if _, found, err := st.Seek(bg, store.SeekParams{Service: "nope", Target: func(int64, int64) (int64, error) { return 0, nil }}); err != nil || found {
		t.Fatalf("unknown service: found %t (%v)", found, err)
	}
	offsets, _, err := st.Offsets(bg)
	must(t, err)
	if offsets[0].Seq != recs[4].Seq {
		t.Fatalf("offset %d after the refused seek, want %d", offsets[0].Seq, recs[4].Seq)
	}
	seq, ok, err := st.FirstSeqFrom(bg, 0)
	must(t, err)
	if !ok || seq != recs[0].Seq {
		t.Fatalf("first seq from the epoch: %d %t", seq, ok)
	}
}

func testRemoveService(t *testing.T, st store.Store) {
	must(t, st.RegisterService(bg, "svc", 0))
	if _, ok, err := st.AcquireLease(bg, lease("svc", "a", 0)); err != nil || !ok {
		t.Fatalf("lease: %t (%v)", ok, err)
	}
	out, err := st.RemoveService(bg, "svc")
	must(t, err)
	if out.Removed || !out.Found || out.Owner != "a" || out.LeaseUntil < out.Now {
		t.Fatalf("remove a leased service: %+v", out)
	}
	must(t, st.ReleaseLease(bg, "svc", "a"))
	out, err = st.RemoveService(bg, "svc")
	must(t, err)
	if !out.Removed {
		t.Fatalf("remove an idle service: %+v", out)
	}
	if out, err := st.RemoveService(bg, "svc"); err != nil || out.Removed || out.Found {
		t.Fatalf("remove it again: %+v (%v)", out, err)
	}
	rows, err := st.ServiceStatuses(bg)
	must(t, err)
	if len(rows) != 0 {
		t.Fatalf("services after removal: %+v", rows)
	}
}

func testClean(t *testing.T, st store.Store) {
	lp, recs := leased(t, st, 20)
	must(t, st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lp, Offset: recs[9].Seq,
		Retries: []store.NewRetry{{Record: recs[3], Dead: true, Attempts: 1}}}))
	var total int64
	eventually(t, "the consumed events age past a retention of 0", func() bool {
		n, err := st.CleanEvents(bg, 0)
		must(t, err)
		total += n
		return total == 9
	})
	// What remains: e4 (a dead letter references it) and everything after the offset.
	n, err := st.CleanEvents(bg, 0)
	must(t, err)
	left, err := st.FetchEvents(bg, 0, 100)
	must(t, err)
	var ids []string
	for _, r := range left {
		ids = append(ids, r.Event.ID)
	}
	sort.Strings(ids)
	if n != 0 || len(left) != 11 {
		t.Fatalf("after cleaning: %d more deleted, left %v", n, ids)
	}
	eventually(t, "the dead letter ages past 0", func() bool {
		n, err := st.CleanDeadLetters(bg, 0)
		must(t, err)
		return n == 1
	})
}

func testCallerTxAbsent(t *testing.T, st store.Store) {
	conn, inCaller, err := st.CallerTx(bg)
	if conn != nil || inCaller || err != nil {
		t.Fatalf("no transaction in ctx: %v %t %v", conn, inCaller, err)
	}
}

// Events and half messages written with a caller's transaction exist if
// and only if it commits.
func testCallerTx(t *testing.T, st store.Store, db *sql.DB) {
	write := func(commit bool, id string) int64 {
		tx, err := db.BeginTx(bg, nil)
		must(t, err)
		defer func() { _ = tx.Rollback() }()
		conn, inCaller, err := st.CallerTx(ddd.ContextWithSQLTx(bg, tx))
		must(t, err)
		if !inCaller || conn == nil {
			t.Fatalf("the transaction in ctx was not recognised: %v %t", conn, inCaller)
		}
		must(t, st.InsertEvents(bg, conn, encodeAll(t, st, event(t, id, "s", false))))
		txID, err := st.BeginTx(bg, conn, store.BeginTxParams{Service: "svc", Token: 9, DueMillis: 60_000, Events: encodeAll(t, st, event(t, id+"-half", "s", false))})
		must(t, err)
		if commit {
			must(t, tx.Commit())
		}
		return txID
	}
	rolledBack := write(false, "gone")
	kept := write(true, "kept")
	if n := sequenceAll(t, st); n != 1 {
		t.Fatalf("sequenced %d events, want the committed one", n)
	}
	recs, err := st.FetchEvents(bg, 0, 10)
	must(t, err)
	if len(recs) != 1 || recs[0].Event.ID != "kept" {
		t.Fatalf("log %v, want kept alone", recs)
	}
	if _, found, err := st.Tx(bg, kept); err != nil || !found {
		t.Fatalf("the committed half message: found %t (%v)", found, err)
	}
	if rolledBack != kept {
		if _, found, err := st.Tx(bg, rolledBack); err != nil || found {
			t.Fatalf("the rolled-back half message: found %t (%v)", found, err)
		}
	}
}

// The change probe moves when events are committed and when they are
// sequenced, and not otherwise.
func testChangeMark(t *testing.T, st store.Store) {
	if st.Identity() == "" {
		t.Fatal("empty Identity")
	}
	m0, err := st.ChangeMark(bg)
	must(t, err)
	if again, err := st.ChangeMark(bg); err != nil || again != m0 {
		t.Fatalf("the mark moved with nothing written: %+v then %+v (%v)", m0, again, err)
	}
	insert(t, st, "m", 3)
	m1, err := st.ChangeMark(bg)
	must(t, err)
	if m1.MaxID <= m0.MaxID || m1.LastSeq != m0.LastSeq {
		t.Fatalf("after an insert the mark went from %+v to %+v, want a higher MaxID only", m0, m1)
	}
	sequenceAll(t, st)
	m2, err := st.ChangeMark(bg)
	must(t, err)
	if m2.LastSeq != m1.LastSeq+3 || m2.MaxID != m1.MaxID {
		t.Fatalf("after sequencing the mark went from %+v to %+v, want LastSeq +3", m1, m2)
	}
}

// Announce runs in a caller's transaction without disturbing it (where
// the database has no notifications it does nothing), and on its own.
func testAnnounce(t *testing.T, st store.Store, db *sql.DB) {
	tx, err := db.BeginTx(bg, nil)
	must(t, err)
	defer func() { _ = tx.Rollback() }()
	must(t, st.Announce(bg, tx, "test"))
	must(t, st.InsertEvents(bg, tx, encodeAll(t, st, event(t, "a1", "s", false))))
	must(t, tx.Commit())
	must(t, st.Announce(bg, nil, "test"))
	if sequenceAll(t, st) != 1 {
		t.Fatal("the event written after Announce in the transaction was not stored")
	}
}
