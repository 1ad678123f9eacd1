package conformance

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/internal/store"
)

// Partitions (see partition.go): several instance processes share one
// service's partitions; one sender's events stay in order and are never
// handled by two instances at a time, across joins, clean leaves, deaths,
// freezes and partition count changes.
func init() {
	register("PartitionsShareAcrossProcesses", testPartitionsShare)
	register("PartitionsJoinAndLeaveUnderLoad", testPartitionsJoinLeave)
	register("PartitionsKillAndFreezeOneOfFour", testPartitionsKillFreeze)
	register("PartitionCountChangeUnderLoad", testPartitionCountChange)
	register("PartitionsRestartedInstanceTakesItsOwnBack", testPartitionsRestart)
}

// producer dispatches rounds of one event per sender; n counts rounds.
type partLoad struct {
	bus     *eventbus.EventBus
	senders int
	rounds  atomic.Int64
}

func (p *partLoad) round(t *testing.T) {
	k := int(p.rounds.Load())
	evts := make([]*ddd.DomainEvent, p.senders)
	for s := range evts {
		evts[s] = mustEvent(t, fmt.Sprintf("acct-%03d", s), k)
	}
	must(t, p.bus.Dispatch(context.Background(), evts...))
	p.rounds.Add(1)
}

func (p *partLoad) total() int { return int(p.rounds.Load()) * p.senders }

// run dispatches rounds every pace until stop is closed; done closes after.
func (p *partLoad) run(t *testing.T, pace time.Duration, stop <-chan struct{}) (done <-chan struct{}) {
	d := make(chan struct{})
	go func() {
		defer close(d)
		tk := time.NewTicker(pace)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				p.round(t)
			}
		}
	}()
	return d
}

// waitOwners waits until the service's partitions are held by want
// distinct instances.
func waitOwners(t *testing.T, bus *eventbus.EventBus, service string, parts, want int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%d partitions of %s held by %d instances", parts, service, want), func() bool {
		rows, err := bus.Services(context.Background())
		must(t, err)
		owners := map[string]bool{}
		n := 0
		for _, r := range rows {
			if r.Parent == service && r.Partitions == parts && r.Owner != "" && r.LeaseUntil.After(time.Now().Add(-time.Second)) {
				owners[r.Owner] = true
				n++
			}
		}
		return n == parts && len(owners) == want
	})
}

// check verifies the calls of total events over senders: none lost, the
// first delivery of one sender's events in order, no two calls of one
// sender at once (except those overlapping skip, a frozen process's). It
// returns the number of redeliveries.
func (c *calls) check(t *testing.T, total, senders int, skip func(h handling) bool) int {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ids) != total {
		t.Errorf("%d distinct events handled, want %d", len(c.ids), total)
	}
	dups := 0
	for _, k := range c.ids {
		dups += k - 1
	}
	bySender := map[string][]handling{}
	for _, h := range c.all {
		bySender[h.sender] = append(bySender[h.sender], h)
	}
	if len(bySender) != senders {
		t.Errorf("%d senders handled, want %d", len(bySender), senders)
	}
	for s, hs := range bySender {
		slices.SortFunc(hs, func(a, b handling) int { return a.start.Compare(b.start) })
		next := 0
		for i, h := range hs {
			if h.n == next {
				next++
			} else if h.n > next {
				t.Errorf("sender %s: event %d first handled before event %d", s, h.n, next)
				break
			}
			if i > 0 && hs[i-1].end.After(h.start) && !skip(hs[i-1]) && !skip(h) {
				t.Errorf("sender %s: events %d (by %s) and %d (by %s) handled at the same time", s, hs[i-1].n, hs[i-1].by, h.n, h.by)
			}
		}
	}
	return dups
}

func noSkip(handling) bool { return false }

func testPartitionsShare(t *testing.T, tdb *dbtest.Database) {
	const service, parts, senders, rounds = "shared-p", 6, 60, 20
	db := tdb.Open(t)
	load := &partLoad{bus: newBus(t, db, "producer"), senders: senders}
	c := newCalls()
	names := []string{"inst-a", "inst-b", "inst-c"}
	for _, n := range names {
		startPartChild(t, tdb, service, n, parts, 2*time.Millisecond, c)
	}
	waitOwners(t, load.bus, service, parts, len(names))
	for range rounds {
		load.round(t)
	}
	waitFor(t, 60*time.Second, "every event handled", func() bool { return c.distinct() >= load.total() })
	if dups := c.check(t, load.total(), senders, noSkip); dups != 0 {
		t.Errorf("%d events handled more than once with nothing failing", dups)
	}
	for _, n := range names {
		if k := c.by(n); k < load.total()/10 {
			t.Errorf("instance %s handled %d of %d events: not a share", n, k, load.total())
		} else {
			t.Logf("%s: %s handled %d of %d", tdb.Dialect, n, k, load.total())
		}
	}
}

func testPartitionsJoinLeave(t *testing.T, tdb *dbtest.Database) {
	const service, parts, senders = "joinleave-p", 4, 40
	db := tdb.Open(t)
	load := &partLoad{bus: newBus(t, db, "producer"), senders: senders}
	c := newCalls()
	a := startPartChild(t, tdb, service, "inst-a", parts, 3*time.Millisecond, c)
	startPartChild(t, tdb, service, "inst-b", parts, 3*time.Millisecond, c)
	waitOwners(t, load.bus, service, parts, 2)
	stop := make(chan struct{})
	done := load.run(t, 40*time.Millisecond, stop)
	waitFor(t, 30*time.Second, "a first share of the load handled", func() bool { return c.distinct() >= 10*senders })
	startPartChild(t, tdb, service, "inst-c", parts, 3*time.Millisecond, c)
	waitFor(t, 30*time.Second, "the joiner to handle events", func() bool { return c.by("inst-c") > 0 })
	mine := partitionSenders(t, load, service, parts, "inst-a")
	if len(mine) == 0 {
		t.Fatal("instance a holds no partition before it stops")
	}
	stopAt := time.Now()
	a.stop(t) // a clean leave under load
	leftAt := c.by("inst-a")
	target := load.total() + 5*senders
	waitFor(t, 30*time.Second, "more load after the leave", func() bool { return c.distinct() >= target })
	close(stop)
	<-done
	waitFor(t, 60*time.Second, "every event handled", func() bool { return c.distinct() >= load.total() })
	dups := c.check(t, load.total(), senders, noSkip)
	// The leaver released its partitions: the others took them at their
	// next poll, not when its leases would have lapsed.
	handover := c.firstAfterBy(mine, stopAt, "inst-a").Sub(stopAt)
	t.Logf("%s: %d events, %d redelivered; a %d (left), b %d, c %d (joined); clean stop to its senders' next delivery elsewhere %s",
		tdb.Dialect, load.total(), dups, leftAt, c.by("inst-b"), c.by("inst-c"), handover.Round(time.Millisecond))
	if handover >= partLease {
		t.Errorf("a clean stop handed over after %s, not before the lease (%s) would have lapsed", handover, partLease)
	}
	if c.by("inst-a") != leftAt {
		t.Errorf("instance a handled events after it stopped")
	}
}

func testPartitionsKillFreeze(t *testing.T, tdb *dbtest.Database) {
	const service, parts, senders = "killfreeze-p", 4, 40
	db := tdb.Open(t)
	load := &partLoad{bus: newBus(t, db, "producer"), senders: senders}
	c := newCalls()
	var kids []*partChild
	for _, n := range []string{"inst-a", "inst-b", "inst-c", "inst-d"} {
		kids = append(kids, startPartChild(t, tdb, service, n, parts, 3*time.Millisecond, c))
	}
	waitOwners(t, load.bus, service, parts, 4)

	// Offsets never move back: polled while everything happens.
	var watch sync.WaitGroup
	watching := make(chan struct{})
	watch.Add(1)
	go func() {
		defer watch.Done()
		last := map[string]int64{}
		for {
			select {
			case <-watching:
				return
			case <-time.After(20 * time.Millisecond):
			}
			rows, err := load.bus.Services(context.Background())
			if err != nil {
				continue
			}
			for _, r := range rows {
				if r.Parent == service {
					if r.ConsumedSeq < last[r.Name] {
						t.Errorf("partition %s: offset moved back from %d to %d", r.Name, last[r.Name], r.ConsumedSeq)
					}
					last[r.Name] = r.ConsumedSeq
				}
			}
		}
	}()
	defer func() { close(watching); watch.Wait() }()

	stop := make(chan struct{})
	done := load.run(t, 40*time.Millisecond, stop)
	waitFor(t, 30*time.Second, "a share handled by a", func() bool { return c.by("inst-a") > 0 && c.distinct() >= 10*senders })
	victims := c.sendersOf("inst-a")
	killedAt := time.Now()
	kids[0].kill(t)
	waitFor(t, 30*time.Second, "the killed instance's senders to be handled again", func() bool { return c.resumedAfter(victims, killedAt) })
	failover := c.firstAfter(victims, killedAt).Sub(killedAt)
	t.Logf("%s: SIGKILL to delivery of its senders elsewhere: %s (lease %s)", tdb.Dialect, failover.Round(time.Millisecond), partLease)
	if failover > 5*time.Second {
		t.Errorf("failover took %s, want at most 5s", failover)
	}

	frozen := c.sendersOf("inst-b")
	kids[1].signal(t, syscall.SIGSTOP)
	frozeAt := time.Now()
	waitFor(t, 30*time.Second, "the frozen instance's senders to be handled again", func() bool { return c.resumedAfter(frozen, frozeAt) })
	time.Sleep(partLease) // well past its lease (a duration to reach, not a synchronisation)
	kids[1].signal(t, syscall.SIGCONT)
	thawedAt := time.Now()
	target := load.total() + 5*senders
	waitFor(t, 30*time.Second, "more load after the thaw", func() bool { return c.distinct() >= target })
	close(stop)
	<-done
	waitFor(t, 60*time.Second, "every event handled", func() bool { return c.distinct() >= load.total() })
	// A call frozen mid-way overlaps its successor's: that is the freeze,
	// not two instances starting one sender's events.
	dups := c.check(t, load.total(), senders, func(h handling) bool {
		return h.by == "inst-b" && h.start.Before(thawedAt) && h.end.After(frozeAt)
	})
	t.Logf("%s: %d events, %d redelivered", tdb.Dialect, load.total(), dups)
}

// partitionSenders returns the load's senders of the partitions owner holds now.
func partitionSenders(t *testing.T, load *partLoad, service string, parts int, owner string) map[string]bool {
	t.Helper()
	rows, err := load.bus.Services(context.Background())
	must(t, err)
	held := map[int]bool{}
	for _, r := range rows {
		if r.Parent == service && r.Owner == owner {
			held[r.Partition] = true
		}
	}
	out := map[string]bool{}
	for s := range load.senders {
		if sender := fmt.Sprintf("acct-%03d", s); held[store.PartitionOf(sender, parts)] {
			out[sender] = true
		}
	}
	return out
}

// sendersOf returns the senders instance by handled.
func (c *calls) sendersOf(by string) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for _, h := range c.all {
		if h.by == by {
			out[h.sender] = true
		}
	}
	return out
}

// resumedAfter reports whether every sender of senders had a call start
// after at (by any instance).
func (c *calls) resumedAfter(senders map[string]bool, at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	for _, h := range c.all {
		if senders[h.sender] && h.start.After(at) {
			seen[h.sender] = true
		}
	}
	return len(seen) == len(senders)
}

// firstAfter is the first start of a call of senders after at.
func (c *calls) firstAfter(senders map[string]bool, at time.Time) time.Time {
	return c.firstAfterBy(senders, at, "")
}

// firstAfterBy is firstAfter leaving out the calls of instance not.
func (c *calls) firstAfterBy(senders map[string]bool, at time.Time, not string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first time.Time
	for _, h := range c.all {
		if senders[h.sender] && h.by != not && h.start.After(at) && (first.IsZero() || h.start.Before(first)) {
			first = h.start
		}
	}
	return first
}

func testPartitionCountChange(t *testing.T, tdb *dbtest.Database) {
	const service, senders = "resize-p", 40
	db := tdb.Open(t)
	load := &partLoad{bus: newBus(t, db, "producer"), senders: senders}
	c := newCalls()
	a := startPartChild(t, tdb, service, "inst-a", 2, 3*time.Millisecond, c)
	b := startPartChild(t, tdb, service, "inst-b", 2, 3*time.Millisecond, c)
	waitOwners(t, load.bus, service, 2, 2)
	stop := make(chan struct{})
	done := load.run(t, 40*time.Millisecond, stop)
	waitFor(t, 30*time.Second, "load handled under 2 partitions", func() bool { return c.distinct() >= 10*senders })
	// A rolling change: two instances configured with 4 partitions join,
	// then the old ones stop.
	startPartChild(t, tdb, service, "inst-c", 4, 3*time.Millisecond, c)
	startPartChild(t, tdb, service, "inst-d", 4, 3*time.Millisecond, c)
	waitOwners(t, load.bus, service, 4, 4)
	a.stop(t)
	b.stop(t)
	waitOwners(t, load.bus, service, 4, 2)
	target := load.total() + 5*senders
	waitFor(t, 30*time.Second, "more load after the change", func() bool { return c.distinct() >= target })
	close(stop)
	<-done
	waitFor(t, 60*time.Second, "every event handled", func() bool { return c.distinct() >= load.total() })
	dups := c.check(t, load.total(), senders, noSkip)
	t.Logf("%s: %d events, %d redelivered", tdb.Dialect, load.total(), dups)
}

// testPartitionsRestart: an instance killed and restarted at once with the
// same InstanceID takes its partitions back without waiting for its old
// leases to lapse, and the other instance does not take them meanwhile.
func testPartitionsRestart(t *testing.T, tdb *dbtest.Database) {
	const service, parts, senders = "restart-p", 2, 40
	db := tdb.Open(t)
	load := &partLoad{bus: newBus(t, db, "producer"), senders: senders}
	c := newCalls()
	a := startPartChild(t, tdb, service, "inst-a", parts, 3*time.Millisecond, c)
	startPartChild(t, tdb, service, "inst-b", parts, 3*time.Millisecond, c)
	waitOwners(t, load.bus, service, parts, 2)
	stop := make(chan struct{})
	done := load.run(t, 40*time.Millisecond, stop)
	waitFor(t, 30*time.Second, "a share handled by a", func() bool { return c.by("inst-a") > 0 && c.distinct() >= 5*senders })
	mine := c.sendersOf("inst-a")
	killAt := time.Now()
	a.kill(t)
	killedAt := time.Now() // the old process is gone: later calls are the new one's
	startPartChild(t, tdb, service, "inst-a", parts, 3*time.Millisecond, c)
	waitFor(t, 30*time.Second, "a's senders handled again", func() bool { return c.resumedAfter(mine, killedAt) })
	back := c.firstAfter(mine, killedAt).Sub(killAt)
	target := load.total() + 5*senders
	waitFor(t, 30*time.Second, "more load after the restart", func() bool { return c.distinct() >= target })
	close(stop)
	<-done
	waitFor(t, 60*time.Second, "every event handled", func() bool { return c.distinct() >= load.total() })
	c.check(t, load.total(), senders, noSkip)
	c.mu.Lock()
	for _, h := range c.all {
		if mine[h.sender] && h.start.After(killedAt) && h.by != "inst-a" {
			t.Errorf("sender %s handled by %s after a's restart", h.sender, h.by)
			break
		}
	}
	c.mu.Unlock()
	t.Logf("%s: SIGKILL to delivery by the restarted instance: %s (its old leases would lapse after %s)", tdb.Dialect, back.Round(time.Millisecond), partLease)
	if back >= partLease {
		t.Errorf("the restarted instance took %s to take its partitions back, not less than the lease (%s)", back, partLease)
	}
}
