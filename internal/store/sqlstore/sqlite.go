package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/dddbus/eventbus/internal/store"
)

// sqliteStore is the store on SQLite: one writer at a time. The guarantees
// need WAL (readers do not block the writer) and a busy timeout (writers
// wait instead of failing with "database is locked"); see package
// eventbus/sqlite. Its sequencer is one UPDATE (sqlite_sequencer.go), its
// change probe looks at the files first (sqlite_probe.go). No
// notifications: buses poll ChangeMark.
type sqliteStore struct {
	base
	polled

	seqProbe, seqStep, seqRegister, seqOldest string // the sequencer's (sqlite_sequencer.go)

	// The database file and its WAL, whose stamps spare the change probe
	// its read while nothing is written (sqlite_probe.go).
	probeFiles []string
	probe      probeCache
}

var _ impl = (*sqliteStore)(nil)

var sqliteText = sqlText{now: "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)", bind: questionMarks}

var sqliteDatabase = database{
	open:           openSQLite,
	text:           sqliteText,
	beginWrite:     []string{"BEGIN IMMEDIATE"},
	lockMigrations: sqliteLockMigrations,
	tableExists:    sqliteTableExists,
}

// SQLiteDSNParams are the DSN parameters the store needs on SQLite, named
// in openSQLite's error; eventbus.SQLiteDSNParams is the same (a test checks).
const SQLiteDSNParams = "_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate&_synchronous=NORMAL&_foreign_keys=1"

// openSQLite checks WAL and the busy timeout. Transactions take the default
// options: mattn/go-sqlite3 accepts only the default isolation level, and
// with _txlock=immediate every transaction takes the write lock at BEGIN.
// A statement of its own needs no transaction: SQLite has no isolation
// levels to choose, one writer at a time, and every read sees the
// committed state as of its start. Preparing saves compiling the
// statement at every call.
func openSQLite(ctx context.Context, db *sql.DB, prefix string) (impl, error) {
	if err := sqliteCheckConn(ctx, db); err != nil {
		return nil, err
	}
	s := &sqliteStore{polled: polled{dialect: "sqlite"}}
	s.base = newBase(db, "sqlite", prefix, sqliteText, s)
	s.stmts = stmtCacheFor(db)
	s.sequencing()
	return s, nil
}

func sqliteCheckConn(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("%w: read journal_mode: %v", store.ErrInvalidDB, err)
	}
	var timeout int
	if err := db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&timeout); err != nil {
		return fmt.Errorf("%w: read busy_timeout: %v", store.ErrInvalidDB, err)
	}
	if !strings.EqualFold(mode, "wal") || timeout <= 0 {
		return fmt.Errorf("%w: sqlite needs journal_mode=WAL and a busy_timeout (got %s, %dms); open it with sqlite.Open (github.com/dddbus/eventbus/sqlite) or add %s to the DSN",
			store.ErrInvalidDB, mode, timeout, SQLiteDSNParams)
	}
	return nil
}

// Init reads the database file, which identifies it and whose stamps the
// change probe compares; an in-memory database has none.
func (s *sqliteStore) Init(ctx context.Context, _ int) error {
	file, err := sqliteFile(ctx, s.db)
	id := sqliteIdentity(file)
	if err == nil {
		s.ident.id = id
	}
	s.setIdentity(id)
	if file != "" {
		s.probeFiles = []string{file, file + "-wal"}
	}
	return nil
}

// identify: the path of the main database file ("" for in-memory ones).
func (s *sqliteStore) identify(ctx context.Context, q rowQuerier) (string, error) {
	file, err := sqliteFile(ctx, q)
	return sqliteIdentity(file), err
}

// sqliteFile is the path of q's main database file ("" for in-memory
// ones, and on error).
func sqliteFile(ctx context.Context, q rowQuerier) (string, error) {
	var a sql.NullString
	if err := q.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&a); err != nil {
		return "", err
	}
	return a.String, nil
}

func sqliteIdentity(file string) string {
	if file == "" {
		return ""
	}
	return "SQLite file " + file
}

func (s *sqliteStore) insertTxRow(ctx context.Context, on txConn, args []any) (int64, error) {
	return s.insertTxLastID(ctx, on, args)
}

func (s *sqliteStore) insertRetries(n int) string {
	return s.q.sql("INSERT INTO " + s.q.retries + s.q.retryValues(n) + " ON CONFLICT (service, event_pk) DO NOTHING")
}

func (s *sqliteStore) addMember() string {
	return s.q.r("INSERT INTO " + s.prefix + "members (service, instance, seen_until) SELECT ?, ?, {now} + ?" +
		" ON CONFLICT (service, instance) DO NOTHING")
}

// Told to use transactions_due: the planner walks the primary key in id
// order instead, through every resolved transaction kept for RetentionTime.
func (s *sqliteStore) listTxs(n int) string {
	return s.q.sql("SELECT " + txInfoCols + " FROM " + s.q.txs + " INDEXED BY " + s.prefix + "transactions_due" +
		" WHERE service = ? AND state IN " + in(n) + " AND id > ? ORDER BY id LIMIT ?")
}

// Each migration runs in a BEGIN IMMEDIATE transaction (beginWrite), which
// SQLite serialises; no further lock is needed.
func sqliteLockMigrations(context.Context, *sql.Conn, string) (func(), error) {
	return func() {}, nil
}

func sqliteTableExists(ctx context.Context, db *sql.DB, table string) bool {
	var n int
	return db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&n) == nil && n > 0
}
