package storetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/dddbus/eventbus/internal/store"
)

// testPartitions: members, a count change requested, refused while the
// old rows are not drained or leased, then done; the new rows' leases and
// retry rows by partition; the old owner fenced out.
func testPartitions(t *testing.T, st store.Store) {
	lp, recs := leased(t, st, 6) // svc at 0, leased by a; senders s0, s1, s2, s0, s1, s2
	must(t, st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lp, Offset: recs[1].Seq,
		Retries: []store.NewRetry{{Record: recs[0], Attempts: 1, LastError: "boom"}}}))
	member := func(who string) store.PartitionView {
		v, err := st.ReportMember(bg, store.MemberParams{Service: "svc", Instance: who, LeaseMillis: 60_000, Standby: true})
		must(t, err)
		return v
	}
	v := member("a")
	member("b")
	v = member("a")
	if !v.Exists || v.Partitions != 1 || v.SwitchTo != 0 || !slices.Equal(v.Members, []string{"a", "b"}) ||
		len(v.Rows) != 1 || v.Rows[0].Name != "svc" || v.Rows[0].Offset != recs[1].Seq || v.Rows[0].Owner != "a" {
		t.Fatalf("view %+v", v)
	}
	must(t, st.LeaveMember(bg, "svc", "b"))
	if v := member("a"); !slices.Equal(v.Members, []string{"a"}) {
		t.Fatalf("members after b left: %v", v.Members)
	}
	if v, err := st.ReportMember(bg, store.MemberParams{Service: "gone", Instance: "a", LeaseMillis: 1}); err != nil || v.Exists {
		t.Fatalf("an unknown service: %+v, %v", v, err)
	}

	if ok, err := st.RequestSwitch(bg, "svc", 2); err != nil || !ok {
		t.Fatalf("request: %t, %v", ok, err)
	}
	if ok, err := st.RequestSwitch(bg, "svc", 4); err != nil || ok {
		t.Fatalf("a second request while one is pending: %t, %v", ok, err)
	}
	v = member("a")
	if v.SwitchTo != 2 || v.SwitchSeq != recs[5].Seq {
		t.Fatalf("pending switch %d at %d, want 2 at %d", v.SwitchTo, v.SwitchSeq, recs[5].Seq)
	}
	sw := store.SwitchParams{Service: "svc", From: 1, To: 2, At: recs[5].Seq}
	if ok, err := st.SwitchPartitions(bg, sw); err != nil || ok {
		t.Fatalf("switch before the drain: %t, %v", ok, err)
	}
	must(t, st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lp, Offset: recs[5].Seq}))
	if ok, err := st.SwitchPartitions(bg, sw); err != nil || ok {
		t.Fatalf("switch while the old row is leased: %t, %v", ok, err)
	}
	must(t, st.ReleaseLease(bg, "svc", "a"))
	if ok, err := st.SwitchPartitions(bg, sw); err != nil || !ok {
		t.Fatalf("switch: %t, %v", ok, err)
	}
	if ok, err := st.SwitchPartitions(bg, sw); err != nil || ok {
		t.Fatalf("switch done twice: %t, %v", ok, err)
	}
	v = member("a")
	if v.Partitions != 2 || v.SwitchTo != 0 || len(v.Rows) != 2 || v.Rows[0].Name != "svc#0/2" || v.Rows[1].Name != "svc#1/2" ||
		v.Rows[0].Offset != recs[5].Seq || v.Rows[1].Offset != recs[5].Seq || v.Rows[0].Owner != "" {
		t.Fatalf("view after the switch %+v", v)
	}
	// The service's own row is no longer leased; its partitions' rows are,
	// under epochs above the old owner's.
	if _, ok, err := st.AcquireLease(bg, lease("svc", "a", 0)); err != nil || ok {
		t.Fatalf("lease of a partitioned service's own row: %t, %v", ok, err)
	}
	p0 := lease("svc", "b", 0)
	p0.Row = "svc#0/2"
	l0, ok, err := st.AcquireLease(bg, p0)
	must(t, err)
	if !ok || l0.Epoch <= lp.Epoch || l0.Offset != recs[5].Seq {
		t.Fatalf("partition 0: ok %t, epoch %d (old %d), offset %d", ok, l0.Epoch, lp.Epoch, l0.Offset)
	}
	p0.Epoch = l0.Epoch
	must(t, st.RenewLease(bg, p0))
	if err := st.CommitOffset(bg, store.CommitOffsetParams{LeaseParams: lp, Offset: recs[5].Seq}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("the old owner's commit: %v, want ErrLeaseLost", err)
	}
	// e1's retry (sender s0) belongs to s0's partition alone.
	own := store.PartitionOf("s0", 2)
	for p := range 2 {
		due, err := st.DueRetries(bg, store.DueRetriesParams{Service: "svc", Limit: 10, Partitions: 2, Partition: p})
		must(t, err)
		if want := map[bool]int{true: 1, false: 0}[p == own]; len(due) != want {
			t.Fatalf("partition %d: %d due retries, want %d", p, len(due), want)
		}
	}
	// Offsets (lags) list the partitions, not the service's own row.
	offsets, _, err := st.Offsets(bg)
	must(t, err)
	var names []string
	for _, o := range offsets {
		names = append(names, o.Service)
	}
	if !slices.Equal(names, []string{"svc#0/2", "svc#1/2"}) {
		t.Fatalf("offsets of %v", names)
	}
	// A seek moves every partition and fences their owners.
	out, found, err := st.Seek(bg, store.SeekParams{Service: "svc", Target: func(from, head int64) (int64, error) { return 0, nil }})
	must(t, err)
	if !found || out.From != recs[5].Seq || out.To != 0 {
		t.Fatalf("seek: found %t, %+v", found, out)
	}
	for _, r := range member("a").Rows {
		if r.Offset != 0 || r.Owner != "" {
			t.Fatalf("partition after the seek: %+v", r)
		}
	}
	if err := st.RenewLease(bg, p0); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("renewal after the seek: %v, want ErrLeaseLost", err)
	}
}
