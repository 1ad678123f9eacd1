package conformance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("StressWritersRollbacksServicesAndACrash", testStress)
}

// testStress: concurrent writers hold their transactions open for random
// times and roll about one in ten back, so ids commit far out of order,
// while several services consume with concurrent workers. Every committed
// event reaches every service exactly once, in per-sender order, and no
// rolled-back event reaches any. One more service has two instances and
// its owner is killed mid-run: there every event arrives at least once and
// at most one batch twice.
func testStress(t *testing.T, tdb *dbtest.Database) {
	const (
		writers     = 8
		txPerWriter = 100 // 1..3 events each: about 1,600 events
		services    = 3
		limit       = 100
	)
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	var recs []*recorder
	for i := range services {
		bus := newBus(t, tdb.Open(t), fmt.Sprintf("stress-%d", i), eventbus.WithConsumeConcurrent(4), eventbus.WithLimitPerRun(limit))
		rec := newRecorder()
		must(t, bus.RegisterEventHandler(rec.handle))
		start(t, bus)
		recs = append(recs, rec)
	}

	// The crash-tested service: instance A owns it until it is killed,
	// then B takes over when the lease lapses.
	crashRec := newRecorder()
	opts := []eventbus.Option{eventbus.WithConsumeConcurrent(4), eventbus.WithLimitPerRun(limit), eventbus.WithLeaseDuration(1500 * time.Millisecond)}
	dbA, kill := openKillable(t, tdb)
	busA := newBus(t, dbA, "stress-crash", opts...)
	var dead atomic.Bool
	release := make(chan struct{})
	must(t, busA.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		if dead.Load() {
			<-release // a dead process runs nothing
			return errors.New("dead")
		}
		return crashRec.handle(ctx, evt)
	}))
	start(t, busA)
	t.Cleanup(func() { close(release) })
	waitFor(t, 10*time.Second, "instance A to take its lease", func() bool { return leased(t, db, "stress-crash") })
	busB := newBus(t, tdb.Open(t), "stress-crash", opts...)
	must(t, busB.RegisterEventHandler(crashRec.handle))
	start(t, busB)

	var (
		mu                  sync.Mutex
		committed, rolled   []string
		wg                  sync.WaitGroup
		nRolled, nCommitted atomic.Int64
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			next := map[string]int{} // each sender belongs to one writer, so its order is defined
			for i := range txPerWriter {
				sender := senderName(w*3 + i%3)
				var evts []*ddd.DomainEvent
				var ids []string
				for range 1 + rng.IntN(3) {
					evts = append(evts, mustEvent(t, sender, next[sender]))
					ids = append(ids, evts[len(evts)-1].ID)
					next[sender]++
				}
				tx := db.Begin()
				if tx.Error != nil {
					t.Errorf("begin: %v", tx.Error)
					return
				}
				if err := producer.Dispatch(ddd.ContextWithTx(context.Background(), tx), evts...); err != nil {
					tx.Rollback()
					t.Errorf("dispatch: %v", err)
					return
				}
				if rng.IntN(3) == 0 { // keep the transaction open a while
					time.Sleep(time.Duration(rng.IntN(8)) * time.Millisecond)
				}
				if rng.IntN(10) == 0 {
					if err := tx.Rollback().Error; err != nil {
						t.Errorf("rollback: %v", err)
						return
					}
					mu.Lock()
					rolled = append(rolled, ids...)
					mu.Unlock()
					nRolled.Add(1)
					continue
				}
				if err := tx.Commit().Error; err != nil {
					t.Errorf("commit: %v", err)
					return
				}
				mu.Lock()
				committed = append(committed, ids...)
				mu.Unlock()
				if nCommitted.Add(1) == writers*txPerWriter/3 {
					// A third of the way: kill the crash service's owner.
					dead.Store(true)
					kill()
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%s: %d events committed, %d rolled back (%d transactions)", tdb.Dialect, len(committed), len(rolled), nRolled.Load())
	// Done when every event is sequenced and every offset is at the head:
	// nothing more can arrive after that.
	for i := range recs {
		waitFor(t, 60*time.Second, fmt.Sprintf("service %d to reach the head", i), func() bool { return atHead(t, db, fmt.Sprintf("stress-%d", i)) })
	}
	waitFor(t, 60*time.Second, "the crash service to reach the head", func() bool { return atHead(t, db, "stress-crash") })
	for _, rec := range recs {
		rec.checkExactlyOnce(t, committed)
	}
	dups := crashRec.checkAtLeastOnce(t, committed)
	t.Logf("%s: crash service: %d events redelivered after the kill (bound: LimitPerRun %d)", tdb.Dialect, dups, limit)
	if dups > limit {
		t.Errorf("crash service: %d events delivered twice, more than one batch (%d)", dups, limit)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events"); n != int64(len(committed)) {
		t.Errorf("%d events stored, want the %d committed", n, len(committed))
	}
}

// checkAtLeastOnce verifies every id was delivered, nothing else was, and
// each sender's first deliveries came in order (redeliveries after a crash
// repeat a suffix). It returns the number of redelivered events.
func (r *recorder) checkAtLeastOnce(t testing.TB, ids []string) int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	dups, want := r.checkOnceOrTwiceLocked(t, ids)
	for id := range r.count {
		if !want[id] {
			t.Errorf("unexpected event %s delivered", id)
		}
	}
	r.checkFirstDeliveryOrderLocked(t)
	return dups
}

// checkOnceOrTwiceLocked reports each of ids that was never delivered or
// delivered more than twice, and returns how many were delivered twice and
// ids as a set.
func (r *recorder) checkOnceOrTwiceLocked(t testing.TB, ids []string) (dups int, want map[string]bool) {
	t.Helper()
	want = make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
		switch c := r.count[id]; {
		case c == 0:
			t.Errorf("event %s lost", id)
		case c > 2:
			t.Errorf("event %s delivered %d times", id, c)
		case c == 2:
			dups++
		}
	}
	return dups, want
}

// checkFirstDeliveryOrderLocked verifies each sender's first deliveries
// came in order; redeliveries after a crash or an outage repeat events
// already seen and are ignored.
func (r *recorder) checkFirstDeliveryOrderLocked(t testing.TB) {
	t.Helper()
	for s, ns := range r.bySender {
		seen := map[int]bool{}
		last := -1
		for _, n := range ns {
			if seen[n] {
				continue
			}
			seen[n] = true
			if n <= last {
				t.Errorf("sender %s: first deliveries out of order: %d after %d", s, n, last)
				break
			}
			last = n
		}
	}
}
