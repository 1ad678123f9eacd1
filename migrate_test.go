package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/migrations"
	"gorm.io/gorm"
)

// TestConcurrentMigrations starts several processes' worth of pools on a
// fresh database at once, some calling Migrate, some NewEventBus, for two
// table prefixes: none may fail, and each migration is applied once.
func TestConcurrentMigrations(t *testing.T) {
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			t.Parallel()
			tdb := target.New(t)
			const pools = 8
			var dbs []*gorm.DB
			for range pools {
				dbs = append(dbs, tdb.Open(t))
			}
			ready := make(chan struct{})
			errs := make(chan error, pools)
			var wg sync.WaitGroup
			for i, db := range dbs {
				prefix := []string{"ddd_", "app_"}[i%2]
				wg.Go(func() {
					<-ready // all at once
					var err error
					if i%4 < 2 {
						err = eventbus.Migrate(context.Background(), db, prefix)
					} else {
						_, err = eventbus.NewEventBus(fmt.Sprintf("svc-%d", i), db, eventbus.WithTablePrefix(prefix))
					}
					if err != nil {
						errs <- fmt.Errorf("pool %d (%s): %w", i, prefix, err)
					}
				})
			}
			close(ready)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			files, err := fs.Glob(migrations.FS, tdb.Dialect+"/*.sql")
			if err != nil || len(files) == 0 {
				t.Fatalf("no embedded migrations for %s: %v", tdb.Dialect, err)
			}
			db := dbs[0]
			for _, prefix := range []string{"ddd_", "app_"} {
				var applied, distinct int64
				must(t, db.Raw("SELECT COUNT(*), COUNT(DISTINCT version) FROM "+prefix+"schema_migrations").Row().Scan(&applied, &distinct))
				if applied != int64(len(files)) || distinct != applied {
					t.Errorf("%sschema_migrations has %d rows (%d versions), want each of the %d migrations once", prefix, applied, distinct, len(files))
				}
				if n := rowCount(t, db, "SELECT COUNT(*) FROM "+prefix+"sequencer"); n != 1 {
					t.Errorf("%ssequencer has %d rows, want 1", prefix, n)
				}
			}
			// Running them again is a no-op.
			must(t, eventbus.Migrate(context.Background(), db, "ddd_"))
			if n := rowCount(t, db, "SELECT COUNT(*) FROM ddd_schema_migrations"); n != int64(len(files)) {
				t.Errorf("a second Migrate left %d rows, want %d", n, len(files))
			}
		})
	}
}

// TestIdentifiersAreValidated: table prefixes and service names reach SQL
// text (tables are named after the prefix), so anything outside their
// documented alphabets is refused before any statement runs.
func TestIdentifiersAreValidated(t *testing.T) {
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			t.Parallel()
			tdb := target.New(t)
			db := tdb.Open(t)
			ctx := context.Background()
			good, err := eventbus.NewEventBus("good", db)
			must(t, err)
			badPrefixes := []string{
				"", "1ddd_", "_ddd", "Ddd_", "ddd-", "ddd_é", "ddd ", "ddd.x_",
				strings.Repeat("a", 25),
				"x; DROP TABLE ddd_events; --",
				"ddd_events; --",
				"a`b", `a"b`, "a'b", "a/*", "a\x00b",
			}
			for _, p := range badPrefixes {
				if err := eventbus.Migrate(ctx, db, p); !errors.Is(err, eventbus.ErrInvalidOption) {
					t.Errorf("Migrate(%q) = %v, want ErrInvalidOption", p, err)
				}
				if _, err := eventbus.NewEventBus("svc", db, eventbus.WithTablePrefix(p)); !errors.Is(err, eventbus.ErrInvalidOption) {
					t.Errorf("NewEventBus with prefix %q = %v, want ErrInvalidOption", p, err)
				}
			}
			badNames := []string{
				"", " ", "svc name", "svc\n", "svc\x00", "ünï", "svc/x", "svc\\x", "svc*",
				strings.Repeat("s", 65),
				"svc'; DROP TABLE ddd_events; --",
				`svc" OR "1"="1`,
				"svc`",
			}
			for _, n := range badNames {
				if _, err := eventbus.NewEventBus(n, db); !errors.Is(err, eventbus.ErrInvalidServiceName) {
					t.Errorf("NewEventBus(%q) = %v, want ErrInvalidServiceName", n, err)
				}
				if err := good.RemoveService(ctx, n); !errors.Is(err, eventbus.ErrInvalidServiceName) {
					t.Errorf("RemoveService(%q) = %v, want ErrInvalidServiceName", n, err)
				}
			}
			// The documented alphabets are accepted.
			for _, n := range []string{"a", "billing.v2", "svc:shipping-eu_1", strings.Repeat("s", 64)} {
				if _, err := eventbus.NewEventBus(n, db); err != nil {
					t.Errorf("NewEventBus(%q) = %v", n, err)
				}
			}
			if _, err := eventbus.NewEventBus("svc", db, eventbus.WithTablePrefix("a"+strings.Repeat("b", 23))); err != nil {
				t.Errorf("24-byte prefix: %v", err)
			}
			// Nothing was dropped or created by the refused calls.
			if n := rowCount(t, db, "SELECT COUNT(*) FROM ddd_events"); n != 0 {
				t.Errorf("ddd_events has %d rows", n)
			}
			for _, table := range []string{"ddd_services", "ddd_sequencer", "ddd_retries"} {
				rowCount(t, db, "SELECT COUNT(*) FROM "+table) // fails if it was dropped
			}
		})
	}
}

func rowCount(t *testing.T, db *gorm.DB, q string) int64 {
	t.Helper()
	var n int64
	must(t, db.Raw(q).Row().Scan(&n))
	return n
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
