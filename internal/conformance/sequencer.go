package conformance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("SequencerStragglerCommitsLate", testSequencerStraggler)
	register("SequencerConcurrentWritersAndBacklog", testSequencerConcurrent)
}

// A transaction that took its id long before others commits after they were
// sequenced: the sequencer must number it later, never skip it.
func testSequencerStraggler(t *testing.T, tdb *dbtest.Database) {
	if tdb.Dialect == "sqlite" {
		t.Skip("SQLite has one writer at a time: no transaction can stay open while others commit")
	}
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	straggler := mustEvent(t, "straggler", 0)
	tx := db.Begin()
	must(t, producer.Dispatch(ddd.ContextWithTx(context.Background(), tx), straggler))

	// A backlog larger than a sequencer batch and window, committed after
	// the straggler took its id.
	var ids []string
	var evts []*ddd.DomainEvent
	for i := range 2600 {
		evts = append(evts, mustEvent(t, senderName(i%7), i))
		ids = append(ids, evts[i].ID)
	}
	for start := 0; start < len(evts); start += 400 {
		must(t, producer.Dispatch(context.Background(), evts[start:min(start+400, len(evts))]...))
	}
	bus := newBus(t, tdb.Open(t), "consumer")
	rec := newRecorder()
	must(t, bus.RegisterEventHandler(rec.handle))
	start(t, bus)
	waitFor(t, 30*time.Second, "the backlog", func() bool { return rec.deliveries() >= len(ids) })
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL"); n != 0 {
		t.Fatalf("%d committed events left unsequenced", n)
	}

	must(t, tx.Commit().Error)
	producer.Notify()
	bus.Notify()
	ids = append(ids, straggler.ID)
	waitFor(t, 30*time.Second, "the straggler", func() bool { return rec.deliveries() >= len(ids) })
	rec.checkExactlyOnce(t, ids)
	checkSequencing(t, tdb, len(ids))
}

// Writers hold their transactions open for random times, some roll back,
// some store big batches, while three services (each running the
// sequencer) consume: every committed event reaches every service exactly
// once, in per-sender order, and is sequenced once.
func testSequencerConcurrent(t *testing.T, tdb *dbtest.Database) {
	const (
		writers  = 6
		txPerW   = 40
		services = 3
	)
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	var recs []*recorder
	for i := range services {
		bus := newBus(t, tdb.Open(t), fmt.Sprintf("seq-%d", i), eventbus.WithRunInterval(5*time.Millisecond))
		rec := newRecorder()
		must(t, bus.RegisterEventHandler(rec.handle))
		recs = append(recs, rec)
		start(t, bus)
	}
	var mu sync.Mutex
	var committed []string
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			sender := senderName(100 + w) // one sender per writer: order is defined
			n := 0
			for i := range txPerW {
				size := 1 + rng.IntN(3)
				if i%13 == 5 {
					size = 1200 // more than a sequencer batch in one transaction
				}
				var evts []*ddd.DomainEvent
				for k := range size {
					evts = append(evts, mustEvent(t, sender, n+k))
				}
				rollback := rng.IntN(5) == 0
				hold := time.Duration(rng.IntN(15)) * time.Millisecond
				if tdb.Dialect == "sqlite" {
					hold = 0 // one writer at a time: holding only serialises the others
				}
				tx := db.Begin()
				if err := producer.Dispatch(ddd.ContextWithTx(context.Background(), tx), evts...); err != nil {
					t.Errorf("dispatch: %v", err)
					tx.Rollback()
					return
				}
				time.Sleep(hold)
				if rollback {
					must(t, tx.Rollback().Error)
					continue
				}
				if err := tx.Commit().Error; err != nil {
					t.Errorf("commit: %v", err)
					return
				}
				n += size
				mu.Lock()
				for _, e := range evts {
					committed = append(committed, e.ID)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for i, rec := range recs {
		waitFor(t, 60*time.Second, fmt.Sprintf("service %d to receive %d events", i, len(committed)), func() bool {
			return rec.deliveries() >= len(committed)
		})
	}
	for _, rec := range recs {
		rec.checkExactlyOnce(t, committed)
	}
	checkSequencing(t, tdb, len(committed))
}

// checkSequencing verifies that the want stored events all have distinct
// sequence numbers and that the sequencer's counter is at the highest.
func checkSequencing(t *testing.T, tdb *dbtest.Database, want int) {
	t.Helper()
	db := tdb.Open(t)
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events"); n != int64(want) {
		t.Errorf("%d events stored, want %d", n, want)
	}
	if n := count(t, db, "SELECT COUNT(DISTINCT seq) FROM ddd_events WHERE seq IS NOT NULL"); n != int64(want) {
		t.Errorf("%d distinct sequence numbers, want %d", n, want)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_events e, ddd_sequencer q WHERE q.id = 1 AND e.seq > q.last_seq"); n != 0 {
		t.Errorf("%d events sequenced above the sequencer's last_seq", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_sequencer q WHERE q.id = 1 AND q.last_seq = (SELECT MAX(seq) FROM ddd_events)"); n != 1 {
		t.Errorf("the sequencer's last_seq is not the highest sequence number")
	}
}
