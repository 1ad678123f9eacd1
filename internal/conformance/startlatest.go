package conformance

import (
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"gorm.io/gorm"
)

func init() {
	register("StartFromLatestIsRegistrationTime", testStartFromLatestIsRegistrationTime)
}

// testStartFromLatestIsRegistrationTime: a service that starts from the
// latest position receives exactly the events committed after it
// registered, whether or not those committed before were sequenced yet,
// including a straggler whose transaction began before the registration
// and committed after it.
func testStartFromLatestIsRegistrationTime(t *testing.T, tdb *dbtest.Database) {
	db := tdb.Open(t)
	producer := newBus(t, db, "producer")
	dispatchN(t, producer, "sequenced-before", 0, 3)
	// A producer-only instance sequences them, then stops.
	stop := start(t, producer)
	waitFor(t, 10*time.Second, "the first events to be sequenced", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL") == 0
	})
	stop()
	// Committed before the registration, and not sequenced: no instance runs.
	dispatchN(t, producer, "unsequenced-before", 0, 3)

	var straggler *ddd.DomainEvent
	var held *gorm.DB
	if tdb.Dialect != "sqlite" { // SQLite: one writer at a time, no straggler
		straggler = mustEvent(t, "straggler", 0)
		held = heldTx(t, db, producer, straggler)
	}

	consumer := newBus(t, tdb.Open(t), "latest", eventbus.WithStartPosition(eventbus.StartFromLatest))
	rec := newRecorder()
	must(t, consumer.RegisterEventHandler(rec.handle)) // registers now
	if n := count(t, db, "SELECT COUNT(*) FROM ddd_services WHERE name = 'latest'"); n != 1 {
		t.Fatalf("RegisterEventHandler did not register the service")
	}

	var want []string
	if held != nil {
		must(t, held.Commit().Error)
		want = append(want, straggler.ID)
	}
	want = append(want, dispatchN(t, producer, "after", 0, 3)...)
	start(t, consumer)
	waitFor(t, 15*time.Second, "the events committed after the registration", func() bool { return rec.distinct() >= len(want) })
	// No extra delivery hides behind the wait: the offset is at the head.
	waitFor(t, 10*time.Second, "the offset to reach the head", func() bool { return atHead(t, db, "latest") })
	rec.checkExactlyOnce(t, want)
}
