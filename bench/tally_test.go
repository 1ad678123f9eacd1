package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// at is a fixed instant plus ms milliseconds.
func at(ms int) time.Time { return time.Unix(1_000_000, 0).Add(time.Duration(ms) * time.Millisecond) }

func TestTallyCounts(t *testing.T) {
	// Six events of two senders (i % 2), each in its own transaction:
	// sender 0 commits 0, 2, 4 one after the other; event 5 of sender 1
	// is begun but never committed.
	led := newLedger(6, 2)
	for i, span := range [][2]int{{0, 10}, {1, 11}, {20, 30}, {21, 31}, {40, 50}} {
		led.begin(i, i+1, at(span[0]))
		led.commit(i, i+1, at(span[1]))
	}
	led.begin(5, 6, at(60))

	tl := newTally(led, false)
	for _, id := range []string{
		eventID(0),
		eventID(4), // sender 0, ahead of 2
		eventID(2), // out of order: 4 began after 2 committed
		eventID(2), // duplicate
		eventID(1),
		eventID(5),    // never committed
		"old-17",      // unknown
		eventID(1000), // outside the ledger
	} {
		tl.deliver(id)
	}
	// Event 3 is never delivered: lost.
	got := tl.counts()
	want := counts{committed: 5, delivered: 4, lost: 1, duplicated: 1, reordered: 1, strays: 3}
	got.p50, got.p99 = 0, 0
	if got != want {
		t.Fatalf("counts = %+v, want %+v", got, want)
	}
}

func TestTallyOverlappingTransactionsAreNotOrdered(t *testing.T) {
	// Events 0 and 2 of sender 0 were in transactions that overlapped: their
	// commit order is unknown, so either delivery order is fine.
	led := newLedger(3, 2)
	led.begin(0, 1, at(0))
	led.begin(2, 3, at(5))
	led.commit(0, 1, at(10))
	led.commit(2, 3, at(12))
	tl := newTally(led, false)
	tl.deliver(eventID(2))
	tl.deliver(eventID(0))
	if c := tl.counts(); c.reordered != 0 || c.lost != 0 {
		t.Fatalf("counts = %+v, want nothing out of order or lost", c)
	}
}

func TestTallyDeliveryBeforeCommitRecorded(t *testing.T) {
	// An in-process consumer may be handed an event before its producer
	// records the commit: its commit returns after that delivery, so it is
	// not out of order behind an event delivered earlier, nor a stray.
	led := newLedger(2, 1)
	led.begin(0, 1, at(0))
	led.begin(1, 2, at(2))
	led.commit(1, 2, at(3))
	tl := newTally(led, true)
	tl.deliver(eventID(1))
	tl.deliver(eventID(0))
	led.commit(0, 1, at(4))
	if c := tl.counts(); c != (counts{committed: 2, delivered: 2, p50: c.p50, p99: c.p99}) {
		t.Fatalf("counts = %+v", c)
	}
}

func TestCommittedLedger(t *testing.T) {
	tl := newTally(committedLedger(130), false)
	for i := range 130 {
		if i != 64 {
			tl.deliver(eventID(i))
		}
	}
	tl.deliver(eventID(3))
	c := tl.counts()
	if c.committed != 130 || c.delivered != 129 || c.lost != 1 || c.duplicated != 1 || c.reordered != 0 {
		t.Fatalf("counts = %+v", c)
	}
}

func TestSettleEndsOnGraceAfterLastDelivery(t *testing.T) {
	led := newLedger(2, 1)
	for i := range 2 {
		led.begin(i, i+1, time.Now())
		led.commit(i, i+1, time.Now())
	}
	tl := newTally(led, false)
	tl.deliver(eventID(0))
	begin := time.Now()
	if err := settle(context.Background(), 50*time.Millisecond, time.Minute, tl); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 50*time.Millisecond || d > 5*time.Second {
		t.Fatalf("settle took %s, want about the 50ms grace", d)
	}
	if c := tl.counts(); c.lost != 1 {
		t.Fatalf("lost = %d, want 1", c.lost)
	}
	if _, last := tl.progress(); last < begin.UnixNano() {
		t.Fatalf("the last delivery's time was not noted: %d", last)
	}
	tl.deliver(eventID(1))
	begin = time.Now()
	if err := settle(context.Background(), time.Minute, time.Minute, tl); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("settle took %s with every event delivered", d)
	}
}

func TestLibFailure(t *testing.T) {
	dl := &deliveries{}
	dl.addCounts("correctness", sysPeer, counts{committed: 10, delivered: 9, lost: 1})
	dl.addCounts("correctness", sysRaw, counts{committed: 10, delivered: 8, lost: 2})
	dl.addCounts("correctness", sysLib, counts{committed: 10, delivered: 10, duplicated: 1})
	if err := dl.libFailure(); err != nil {
		t.Fatalf("a peer's loss or eventbus's duplicate failed the run: %v", err)
	}
	dl.addCounts("drain", sysLib, counts{committed: 10, delivered: 10, reordered: 1})
	err := dl.libFailure()
	if err == nil || !strings.Contains(err.Error(), "drain: 0 lost, 1 out of order") {
		t.Fatalf("libFailure = %v, want the drain's out-of-order event", err)
	}
}

func TestEventIndex(t *testing.T) {
	for _, i := range []int{0, 7, 123_456_789, 99_999_999_999} {
		if got, ok := eventIndex(eventID(i)); !ok || got != i {
			t.Errorf("eventIndex(%q) = %d, %v", eventID(i), got, ok)
		}
	}
	for _, id := range []string{"", "old-17", "bench-", "bench-12", "bench-0000000000000000001x", "01JH0000000000000000000000", "bench-99999999999999999999"} {
		if i, ok := eventIndex(id); ok {
			t.Errorf("eventIndex(%q) = %d, want no event", id, i)
		}
	}
}
