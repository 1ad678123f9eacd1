// Package sqlstore is the store (internal/store) of the bus on SQLite,
// MySQL/MariaDB and PostgreSQL through database/sql.
//
// One implementation per database: what differs lies in one file each
// (postgres.go, mysql.go, sqlite.go: the clock, placeholders, locking,
// the sequencer's server-side step, the session checks) behind the
// dialect interface, and queries.go builds every statement once per
// table prefix from it. Table names, column lists and state codes are
// defined once, in queries.go. The operations (events.go, sequencer.go,
// lease.go, retries.go, services.go, deadletters.go, halfmsg.go,
// cleaner.go) hold the arguments' order and the row scanning next to the
// statement they use.
//
// SQL lives in Go strings, not embedded .sql files: most statements are
// assembled (the table prefix, the dialect's clock expression, IN lists
// and multi-row INSERTs of varying length, the dialect's insert-ignore),
// and a .sql file would still need the same assembly in Go. Migrations,
// which are fixed text per dialect, are embedded files (migrations/).
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

// Store is the store on one database and table prefix.
type Store struct {
	db     *sql.DB
	d      dialect
	q      *queries
	pq     partitionQueries
	prefix string
	stmts  *stmtCache // shared with the other stores of db; nil: nothing kept prepared
	ownTx  bool       // a statement of its own needs a transaction of its own (dialect.ownTx)

	// MySQL's max_allowed_packet, and what of it one INSERT's rows may take
	// (0 elsewhere: no limit below the bus's MaxPayloadBytes); see packet.go.
	packetBytes, packetBudget int

	// The database, to recognise callers' transactions on it (callertx.go).
	ident dbIdentity

	// Wake-ups (wakes.go): the database's identity with the prefix, and
	// PostgreSQL's notification channel for it.
	wakeID, channel string
	// SQLite: the database file and its WAL, whose stamps spare the change
	// probe its read while nothing is written (wakes.go).
	probeFiles []string
	probe      probeCache
}

var _ store.Store = (*Store)(nil)

// New returns the store of db, whose database/sql driver serves dialect
// ("sqlite", "mysql" or "postgres"), for the tables named with prefix.
// It checks the connection's settings; Init completes it once the schema
// is migrated.
func New(ctx context.Context, db *sql.DB, dialect, prefix string) (*Store, error) {
	d, err := dialectNamed(dialect)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, d: d, q: newQueries(d, prefix), prefix: prefix}
	s.pq = newPartitionQueries(s.q, prefix)
	if d.prepares() {
		s.stmts = stmtCacheFor(db)
	}
	if err := d.checkConn(ctx, db); err != nil {
		return nil, err
	}
	if s.ownTx, err = d.ownTx(ctx, db); err != nil {
		return nil, err
	}
	return s, nil
}

// Init reads what the store needs from the migrated database: MySQL's
// packet limit, checked against maxPayloadBytes, and the database's
// identity (so that recognising a caller's transaction from another pool
// never needs a connection of the store's own pool).
func (s *Store) Init(ctx context.Context, maxPayloadBytes int) error {
	if err := s.readPacketLimit(ctx, maxPayloadBytes); err != nil {
		return err
	}
	id, err := s.identify(ctx, s.db)
	if err == nil {
		s.ident.id = id
	}
	s.setIdentity(id)
	return nil
}

// Dialect names the store's database.
func (s *Store) Dialect() string { return s.d.name() }

func dialectNamed(name string) (dialect, error) {
	switch name {
	case "sqlite":
		return sqliteDialect{}, nil
	case "mysql":
		return mysqlDialect{}, nil
	case "postgres":
		return postgresDialect{}, nil
	}
	return nil, fmt.Errorf("%w: unsupported dialect %q (want sqlite, mysql or postgres)", store.ErrInvalidDB, name)
}
