package conformance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
)

func init() {
	register("ClockIsUTCWhateverSessionTimeZone", testClockIsUTC)
}

// The bus's clock (leases, retry and check times, created_at) is Unix time
// whatever the session's time zone. A zone with DST repeats an hour of
// local time in autumn; a clock computed through local time then jumps an
// hour forward (every lease looks expired) or back (failover, retries and
// checks wait an hour).
func testClockIsUTC(t *testing.T, tdb *dbtest.Database) {
	const zone = "Europe/Berlin"
	switch tdb.Dialect {
	case "sqlite":
		t.Skip("SQLite has no session time zone: its clock is julianday('now'), UTC")
	case "mysql":
		var n int64
		must(t, tdb.Open(t).Raw("SELECT COUNT(*) FROM mysql.time_zone_name WHERE name = ?", zone).Scan(&n).Error)
		if n == 0 {
			t.Skipf("skipping: the server has no time zone tables (load them with "+
				"`mysql_tzinfo_to_sql /usr/share/zoneinfo | mysql -u root mysql`; .ci/run does) so %s is unknown", zone)
		}
	}
	// Migrate on an ordinary pool, so only the statements under test run
	// on the pools with a moved clock.
	plain := tdb.Open(t)
	newBus(t, plain, "clock-migrate")

	// MySQL lets a session set its clock (SET timestamp): take instants in
	// both occurrences of the repeated autumn hour, and after the spring
	// change. PostgreSQL cannot: check the present, in the zone.
	instants := []time.Time{time.Now()}
	if tdb.Dialect == "mysql" {
		instants = []time.Time{
			time.Date(2026, 10, 25, 0, 30, 0, 250e6, time.UTC), // 02:30 CEST, first occurrence
			time.Date(2026, 10, 25, 1, 30, 0, 250e6, time.UTC), // 02:30 CET, second occurrence
			time.Date(2026, 3, 29, 1, 30, 0, 250e6, time.UTC),  // 03:30 CEST, after the spring change
		}
	}
	for i, at := range instants {
		// CET has the same DST rules; gorm's postgres driver reads TimeZone
		// from the DSN without URL-decoding it, so a name with "/" fails.
		vars := map[string]string{"TimeZone": "CET"}
		if tdb.Dialect == "mysql" {
			vars = map[string]string{
				"time_zone": "'" + zone + "'",
				"timestamp": fmt.Sprintf("%d.%03d", at.Unix(), at.Nanosecond()/1e6),
			}
		}
		db := tdb.OpenSession(t, vars)
		service := fmt.Sprintf("clock-%d", i)
		bus := newBus(t, db, service, eventbus.WithAutoMigrate(false))
		before := time.Now()
		must(t, bus.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }))
		after := time.Now()

		var created int64
		must(t, plain.Raw("SELECT created_at FROM ddd_services WHERE name = ?", service).Scan(&created).Error)
		got := time.UnixMilli(created)
		if tdb.Dialect == "mysql" {
			if !got.Equal(at.Truncate(time.Millisecond)) {
				t.Errorf("session clock at %s (%s in %s): the bus's clock says %s, off by %s",
					at.Format(time.RFC3339Nano), at.In(mustZone(t, zone)).Format("15:04:05 MST"), zone,
					got.UTC().Format(time.RFC3339Nano), got.Sub(at))
			}
			continue
		}
		// The database's own clock may differ a little from this process's.
		if got.Before(before.Add(-5*time.Second)) || got.After(after.Add(5*time.Second)) {
			t.Errorf("session in %s: the bus's clock says %s, this process %s", zone, got.UTC(), before.UTC())
		}
	}
}

func mustZone(t testing.TB, name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}
