package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Every event a contestant commits is event i of its run, with the ID
// eventID(i), sent by sender i % senders. A ledger records what was
// committed and when; a tally, one per consumer (service, consumer group,
// reader), records what that consumer was handed. Together they give the
// delivery counters of the run: committed, delivered, lost, duplicated and
// delivered out of per-sender order.

const idPrefix = "bench-"

// eventID is the ID of event i: 26 characters, the length of the library's
// own IDs, increasing with i.
func eventID(i int) string { return fmt.Sprintf("%s%020d", idPrefix, i) }

// eventIndex is the inverse of eventID. It parses by hand: it runs in
// every handler call of every contestant, inside the timed drains.
func eventIndex(id string) (int, bool) {
	s, ok := strings.CutPrefix(id, idPrefix)
	if !ok || len(s) != 20 {
		return 0, false
	}
	i := 0
	for k := range len(s) {
		c := s[k]
		if c < '0' || c > '9' || i > (math.MaxInt-9)/10 {
			return 0, false
		}
		i = i*10 + int(c-'0')
	}
	return i, true
}

// ledger records, for one contestant's run, which events were committed:
// the time each one's transaction began and the time its commit returned
// (UnixNano, zero until known).
type ledger struct {
	size, senders int
	begun         []atomic.Int64 // nil in a count-only ledger
	committed     []atomic.Int64
	n             atomic.Int64 // events committed
	lastCommit    atomic.Int64
}

func newLedger(size, senders int) *ledger {
	return &ledger{size: size, senders: senders,
		begun: make([]atomic.Int64, size), committed: make([]atomic.Int64, size)}
}

// committedLedger is a count-only ledger of events 0..size-1, all committed
// before any consumer started, with no times: it judges losses and
// duplicates but not order. The peak-RSS child uses it so that counting
// costs it one bit per event.
func committedLedger(size int) *ledger {
	l := &ledger{size: size, senders: 1}
	l.n.Store(int64(size))
	return l
}

// begin records that events [from, to) are in a transaction that began at.
func (l *ledger) begin(from, to int, at time.Time) {
	for i := from; i < to; i++ {
		l.begun[i].Store(at.UnixNano())
	}
}

// commit records that the transaction of events [from, to) committed: its
// commit returned at at.
func (l *ledger) commit(from, to int, at time.Time) {
	for i := from; i < to; i++ {
		l.committed[i].Store(at.UnixNano())
	}
	l.n.Add(int64(to - from))
	for {
		last := l.lastCommit.Load()
		if last >= at.UnixNano() || l.lastCommit.CompareAndSwap(last, at.UnixNano()) {
			return
		}
	}
}

func (l *ledger) isCommitted(i int) bool {
	if l.committed == nil {
		return i < l.size
	}
	return l.committed[i].Load() != 0
}

// tally records what one consumer was handed of a ledger's events.
type tally struct {
	led *ledger

	mu         sync.Mutex
	seen       []uint64 // bit i: event i was delivered
	handled    []int64  // UnixNano of event i's first delivery; nil unless latencies are kept
	maxBegun   []int64  // per sender: the latest begin time of its delivered events
	delivered  int      // distinct events
	duplicated int      // deliveries of an event already delivered
	reordered  int      // events delivered after a later event of their sender
	unknown    int      // deliveries of IDs that are no event of the ledger
	last       int64    // UnixNano of the last first delivery (see deliver)
	progressed int      // delivered when settle last looked
}

// newTally returns a consumer's tally of led; keepLatency keeps each
// event's delivery time for commit-to-handler latencies.
func newTally(led *ledger, keepLatency bool) *tally {
	t := &tally{led: led, seen: make([]uint64, (led.size+63)/64)}
	if keepLatency {
		t.handled = make([]int64, led.size)
	}
	if led.begun != nil {
		t.maxBegun = make([]int64, led.senders)
	}
	return t
}

// deliver records that the consumer was handed the event with this ID.
//
// Out of order: event A of a sender is counted when, at its first
// delivery, an event B of the same sender whose transaction began after A's
// commit had returned was already delivered. Only pairs whose commit order
// the harness knows for certain are compared: events of one sender in one
// transaction, or in transactions that overlapped, are not (every scenario
// commits a sender's events one transaction after the other).
//
// The time of the last first delivery is exact when the tally keeps
// latencies or when this delivery completes the ledger; otherwise settle
// notes it within a tick. (time.Now is a system call on some virtual
// machines, about 0.25 µs here: too dear for every event of a drain.)
func (t *tally) deliver(id string) {
	var now int64
	if t.handled != nil {
		now = time.Now().UnixNano()
	}
	t.deliverAt(id, now)
}

// deliverAt is deliver at a time taken elsewhere (UnixNano; another
// process's clock, the same machine's).
func (t *tally) deliverAt(id string, now int64) {
	i, ok := eventIndex(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok || i >= t.led.size {
		t.unknown++
		return
	}
	word, bit := i/64, uint64(1)<<(i%64)
	if t.seen[word]&bit != 0 {
		t.duplicated++
		return
	}
	t.seen[word] |= bit
	t.delivered++
	switch {
	case t.handled != nil:
		t.handled[i] = now
		t.last = now
	case int64(t.delivered) >= t.led.n.Load():
		t.last = time.Now().UnixNano()
	}
	if t.maxBegun != nil {
		s := i % t.led.senders
		// A commit not yet recorded returned after now, so after the begin
		// of any event already delivered: not out of order.
		if c := t.led.committed[i].Load(); c != 0 && t.maxBegun[s] > c {
			t.reordered++
		}
		t.maxBegun[s] = max(t.maxBegun[s], t.led.begun[i].Load())
	}
}

// progress returns how many distinct events were delivered and when the
// last of them was.
func (t *tally) progress() (delivered int, last int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.delivered, t.last
}

// look is settle's tick: if events were delivered since the last look and
// their time was not taken, now stands for it.
func (t *tally) look(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.delivered > t.progressed && t.handled == nil && int64(t.delivered) < t.led.n.Load() {
		t.last = max(t.last, now.UnixNano())
	}
	t.progressed = t.delivered
}

// counts are one consumer's delivery counters for one run.
type counts struct {
	committed  int // events committed, which the consumer should have been handed
	delivered  int // distinct committed events handed to it
	lost       int // committed and never delivered before the wait ended
	duplicated int // deliveries of an event already delivered
	reordered  int // events delivered after a later event of their sender
	strays     int // deliveries of events never committed (or of unknown IDs)
	p50, p99   float64
}

// counts closes the tally; call it after the wait (settle) ended.
func (t *tally) counts() counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := counts{duplicated: t.duplicated, reordered: t.reordered, strays: t.unknown, p50: math.NaN(), p99: math.NaN()}
	var lat []float64
	for i := range t.led.size {
		seen := t.seen[i/64]&(1<<(i%64)) != 0
		switch committed := t.led.isCommitted(i); {
		case committed && seen:
			c.committed++
			c.delivered++
			if t.handled != nil {
				lat = append(lat, float64(t.handled[i]-t.led.committed[i].Load())/float64(time.Millisecond))
			}
		case committed:
			c.committed++
			c.lost++
		case seen:
			c.strays++
		}
	}
	if lat != nil {
		c.p50, c.p99 = pct(lat, 50), pct(lat, 99)
	}
	return c
}

// lostEvents returns the committed events the consumer was not handed;
// call it after the wait (settle) ended.
func (t *tally) lostEvents() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for i := range t.led.size {
		if t.led.isCommitted(i) && t.seen[i/64]&(1<<(i%64)) == 0 {
			out = append(out, i)
		}
	}
	return out
}

// latencies returns the commit-to-handler times (ms) of the delivered events.
func (t *tally) latencies() []float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []float64
	for i, h := range t.handled {
		if c := t.led.committed[i].Load(); h != 0 && c != 0 {
			out = append(out, float64(h-c)/float64(time.Millisecond))
		}
	}
	return out
}

// settle waits, after the producers are done, until every tally has every
// committed event, or until none of them was handed a new event for grace
// (counted from the latest of the start of the wait, the last commit and
// the last new delivery), or for at most limit. What is missing then is
// lost: the wait is the deadline that defines a loss.
func settle(ctx context.Context, grace, limit time.Duration, ts ...*tally) error {
	begin := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		complete := true
		active := begin.UnixNano()
		for _, t := range ts {
			t.look(time.Now())
			delivered, last := t.progress()
			complete = complete && int64(delivered) >= t.led.n.Load()
			active = max(active, last, t.led.lastCommit.Load())
		}
		now := time.Now()
		if complete || now.Sub(time.Unix(0, active)) >= grace || now.Sub(begin) >= limit {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// drainRate is the events ts were handed, over the time from begin to the
// last first delivery of any of them (NaN if none was handed anything).
func drainRate(begin time.Time, ts ...*tally) float64 {
	var last time.Time
	total := 0
	for _, t := range ts {
		delivered, at := t.progress()
		total += delivered
		if at != 0 && time.Unix(0, at).After(last) {
			last = time.Unix(0, at)
		}
	}
	if total == 0 {
		return math.NaN()
	}
	return float64(total) / last.Sub(begin).Seconds()
}
