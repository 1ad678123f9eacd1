package conformance

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("SequencerStatesItsIsolation", testSequencerStatesItsIsolation)
}

// testSequencerStatesItsIsolation: with SERIALIZABLE as every connection's
// default isolation level, three instances of different services number
// and consume while six producers dispatch. The sequencer and the
// registration state their level (READ COMMITTED): none of their calls may
// fail (a sequencer running at the default fails with serialization
// errors whenever two instances number at once), and every event reaches
// every service.
func testSequencerStatesItsIsolation(t *testing.T, tdb *dbtest.Database) {
	if tdb.Dialect == "sqlite" {
		t.Skip("SQLite has no isolation levels")
	}
	tdb.Isolation = "serializable"
	const (
		services  = 3
		producers = 6
		perProd   = 60
	)
	db := tdb.Open(t)
	var level string
	must(t, db.Raw(map[string]string{
		"postgres": "SELECT current_setting('default_transaction_isolation')",
		"mysql":    "SELECT @@SESSION.tx_isolation",
	}[tdb.Dialect]).Scan(&level).Error)
	if !strings.EqualFold(strings.ReplaceAll(level, "-", " "), "serializable") {
		t.Fatalf("the connections' default isolation is %q, want serializable", level)
	}
	producer := newBus(t, db, "producer")
	sink := newLogSink()
	var recs []*recorder
	for i := range services {
		bus := newBus(t, tdb.Open(t), fmt.Sprintf("serial-%d", i), eventbus.WithRunInterval(5*time.Millisecond), eventbus.WithLogger(sink.logger()))
		rec := newRecorder()
		must(t, bus.RegisterEventHandler(rec.handle))
		recs = append(recs, rec)
		start(t, bus)
	}
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProd {
				evt := mustEvent(t, senderName(p), i)
				if err := producer.Dispatch(context.Background(), evt); err != nil {
					t.Errorf("dispatch: %v", err)
					return
				}
				mu.Lock()
				ids = append(ids, evt.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for i, rec := range recs {
		waitFor(t, 60*time.Second, fmt.Sprintf("service %d to receive %d events", i, len(ids)), func() bool { return rec.distinct() >= len(ids) })
		rec.checkExactlyOnce(t, ids)
	}
	for _, what := range []string{"sequencer", "register service"} {
		if n, last := sink.errorsFrom(what); n > 0 {
			t.Errorf("%d calls failed in the %s, the last: %s", n, what, last)
		}
	}
}

// errorsFrom returns how many records have an err attribute starting with
// prefix, and the last such error.
func (s *logSink) errorsFrom(prefix string) (n int, last string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range *s.records {
		if err := r.attrs["err"]; strings.HasPrefix(err, prefix) {
			n, last = n+1, err
		}
	}
	return n, last
}
