package sqlstore_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/internal/dbtest"
	"github.com/dddbus/eventbus/internal/store"
	"github.com/dddbus/eventbus/internal/store/sqlstore"
	"github.com/dddbus/eventbus/internal/store/storetest"
)

// TestStoreContract runs the store suite on every database (SQLite files,
// MariaDB/MySQL and PostgreSQL from EVENTBUS_MYSQL_DSN and
// EVENTBUS_POSTGRES_DSN; skipped, saying so, without them).
func TestStoreContract(t *testing.T) {
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) (store.Store, *sql.DB) {
				return openStore(t, target.New(t))
			})
		})
	}
}

// openStore migrates tdb's database and returns an initialised store on it
// with its pool.
func openStore(t *testing.T, tdb *dbtest.Database) (*sqlstore.Store, *sql.DB) {
	t.Helper()
	ctx := context.Background()
	db := tdb.Open(t)
	if err := eventbus.Migrate(ctx, db, "ddd_"); err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.New(ctx, sqlDB, tdb.Dialect, "ddd_")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Init(ctx, 1<<20); err != nil {
		t.Fatal(err)
	}
	return st, sqlDB
}
