// Package sqlstore is the store (internal/store) of the bus on SQLite,
// MySQL/MariaDB and PostgreSQL through database/sql.
//
// One implementation per database: postgresStore (postgres*.go),
// mysqlStore (mysql*.go) and sqliteStore (sqlite*.go) each implement
// store.Store. Each owns its whole statements where its path differs (the
// sequencer's step, probe, registration and upkeep; LISTEN/NOTIFY or the
// change probe; the INSERT that returns an id; inserts that keep an
// existing row; index hints; the migration lock; the connection checks;
// the identity that recognises a caller's transaction) and embeds base
// (base.go), which holds what is the same SQL on all three: table and
// column names and state codes (queries.go, once), the portable
// statements, and the operations built on them. The operations (events.go,
// lease.go, retries.go, services.go, deadletters.go, halfmsg.go,
// cleaner.go, partitions.go) hold the arguments' order and the row
// scanning next to the statement they use.
//
// SQL lives in Go strings, not embedded .sql files: most statements are
// assembled (the table prefix, the database's clock, IN lists and
// multi-row INSERTs of varying length), and a .sql file would still need
// the same assembly in Go. Migrations, which are fixed text per database,
// are embedded files (migrations/).
//
// How a statement runs (exec.go: on its own at READ COMMITTED, PostgreSQL
// wrapping it in a transaction of its own; on a caller's transaction's
// connection; prepared through the per-pool cache of stmts.go) is decided
// in one place.
package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/dddbus/eventbus/internal/store"
)

// Store is the store on one database and table prefix: the handle New
// returns, around the database's own implementation.
type Store struct{ impl }

// impl is what each database's store provides: every operation, and what
// the bus and its tests call beyond store.Store.
type impl interface {
	store.Store
	// Init reads what the store needs from the migrated database.
	Init(ctx context.Context, maxPayloadBytes int) error
	// Dialect names the store's database.
	Dialect() string
	// Channel is the log's notification channel (PostgreSQL; "" elsewhere).
	Channel() string
	// HotQueries and OpsQueries are statements for the EXPLAIN tests (explain.go).
	HotQueries() map[string]string
	OpsQueries() map[string][2]any
}

var _ store.Store = (*Store)(nil)

// New returns the store of db, whose database/sql driver serves dialect
// ("sqlite", "mysql" or "postgres"), for the tables named with prefix.
// It checks the connection's settings; Init completes it once the schema
// is migrated.
func New(ctx context.Context, db *sql.DB, dialect, prefix string) (*Store, error) {
	d, err := databaseNamed(dialect)
	if err != nil {
		return nil, err
	}
	st, err := d.open(ctx, db, prefix)
	if err != nil {
		return nil, err
	}
	return &Store{st}, nil
}

// database is one supported database, by its GORM dialector name: how New
// opens its store, and what the migrations (schema.go) do differently on
// it. The migrations run before any store exists (eventbus.Migrate takes
// the name only), so these are plain values rather than store methods.
type database struct {
	open func(ctx context.Context, db *sql.DB, prefix string) (impl, error)
	// text writes the versions table's statements (ApplyMigration).
	text sqlText
	// beginWrite are the statements that start a READ COMMITTED
	// transaction on a raw connection, holding the write lock from its
	// first statement where the database needs it (SQLite).
	beginWrite []string
	// lockMigrations takes a lock that serialises migrations across
	// processes on conn, and returns its release.
	lockMigrations func(ctx context.Context, conn *sql.Conn, prefix string) (func(), error)
	// tableExists reports whether table exists where db's connections
	// resolve unqualified names.
	tableExists func(ctx context.Context, db *sql.DB, table string) bool
}

// databaseNamed is the one place that maps a dialect name to its database.
func databaseNamed(name string) (database, error) {
	switch name {
	case "sqlite":
		return sqliteDatabase, nil
	case "mysql":
		return mysqlDatabase, nil
	case "postgres":
		return postgresDatabase, nil
	}
	return database{}, fmt.Errorf("%w: unsupported dialect %q (want sqlite, mysql or postgres)", store.ErrInvalidDB, name)
}
