package eventbus

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// sqliteDialect: one writer at a time. The guarantees need WAL (readers do
// not block the writer) and a busy timeout (writers wait instead of failing
// with "database is locked"); see OpenSQLite.
type sqliteDialect struct{}

func (sqliteDialect) returningID() string { return "" }

func (sqliteDialect) name() string { return "sqlite" }

func (sqliteDialect) nowMillis() string {
	return "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
}

// An UPDATE (not a SELECT) so the write lock is taken before anything is read.
func (sqliteDialect) lockSequencer(t string) string {
	return "UPDATE " + t + " SET last_seq = last_seq WHERE id = 1 RETURNING last_seq"
}

func (sqliteDialect) numberBatch(string, string) string { return "" }

func (sqliteDialect) beginWrite() string { return "BEGIN IMMEDIATE" }

func (sqliteDialect) insertIgnore(q, key string) string {
	return q + " ON CONFLICT (" + key + ") DO NOTHING"
}

// mattn/go-sqlite3 accepts only the default isolation level; with
// _txlock=immediate every transaction takes the write lock at BEGIN.
func (sqliteDialect) txOptions() *sql.TxOptions { return nil }

func (sqliteDialect) sequencerTxOptions() *sql.TxOptions { return nil }

func (sqliteDialect) forceIndex(string) string { return "" }

func (sqliteDialect) rebind(q string) string { return q }

// Each migration runs in a BEGIN IMMEDIATE transaction (beginWrite), which
// SQLite serialises; no further lock is needed.
func (sqliteDialect) lockMigrations(context.Context, *sql.Conn, string) (func(), error) {
	return func() {}, nil
}

func (sqliteDialect) checkConn(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("%w: read journal_mode: %v", ErrInvalidDB, err)
	}
	var timeout int
	if err := db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&timeout); err != nil {
		return fmt.Errorf("%w: read busy_timeout: %v", ErrInvalidDB, err)
	}
	if !strings.EqualFold(mode, "wal") || timeout <= 0 {
		return fmt.Errorf("%w: sqlite needs journal_mode=WAL and a busy_timeout (got %s, %dms); open it with eventbus.OpenSQLite or add %s to the DSN",
			ErrInvalidDB, mode, timeout, SQLiteDSNParams)
	}
	return nil
}
