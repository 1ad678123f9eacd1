package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/dddbus/eventbus/internal/store"
)

// sqliteDialect: one writer at a time. The guarantees need WAL (readers do
// not block the writer) and a busy timeout (writers wait instead of failing
// with "database is locked"); see package eventbus/sqlite.
type sqliteDialect struct{}

func (sqliteDialect) returningID() string { return "" }

func (sqliteDialect) name() string { return "sqlite" }

func (sqliteDialect) nowMillis() string {
	return "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
}

func (sqliteDialect) beginWrite() []string { return []string{"BEGIN IMMEDIATE"} }

func (sqliteDialect) insertIgnore(q, key string) string {
	return q + " ON CONFLICT (" + key + ") DO NOTHING"
}

// mattn/go-sqlite3 accepts only the default isolation level; with
// _txlock=immediate every transaction takes the write lock at BEGIN.
func (sqliteDialect) txOptions() *sql.TxOptions { return nil }

func (sqliteDialect) rebind(q string) string { return q }

// Each migration runs in a BEGIN IMMEDIATE transaction (beginWrite), which
// SQLite serialises; no further lock is needed.
func (sqliteDialect) lockMigrations(context.Context, *sql.Conn, string) (func(), error) {
	return func() {}, nil
}

// sqliteUnnumbered is a condition selecting the events of table t that have
// no seq yet. One writer at a time: an id is taken inside the write lock
// and its transaction commits before the next writer takes one, and the
// sequencer numbers rows in id order under the same lock. So the
// unnumbered rows are exactly those above the id of the highest-numbered
// row still stored, and the table needs no index of unnumbered rows:
// rowids find them. (seq IS NULL is checked too, so a row is never
// numbered twice whatever happens.)
func sqliteUnnumbered(t string) string {
	return "id > COALESCE((SELECT id FROM " + t + " WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1), 0) AND seq IS NULL"
}

func (sqliteDialect) checkConn(ctx context.Context, db *sql.DB) error {
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

// SQLite has no isolation levels to choose: one writer at a time, and
// every read sees the committed state as of its start.
func (sqliteDialect) ownTx(context.Context, *sql.DB) (bool, error) { return false, nil }

// Preparing saves compiling the statement at every call.
func (sqliteDialect) prepares() bool { return true }

// No limit below the bus's MaxPayloadBytes.
func (sqliteDialect) packetLimit(context.Context, *sql.DB) (int, error) { return 0, nil }

// The path of the main database file ("" for in-memory ones).
func (sqliteDialect) identify(ctx context.Context, q rowQuerier, _ string) (string, error) {
	var a sql.NullString
	err := q.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&a)
	if err != nil || a.String == "" {
		return "", err
	}
	return "SQLite file " + a.String, nil
}

func (sqliteDialect) tableExists(ctx context.Context, db *sql.DB, table string) bool {
	var n int
	return db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&n) == nil && n > 0
}

// SQLiteDSNParams are the DSN parameters the store needs on SQLite, named
// in checkConn's error; eventbus.SQLiteDSNParams is the same (a test checks).
const SQLiteDSNParams = "_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate&_synchronous=NORMAL&_foreign_keys=1"

func (sqliteDialect) useIndex(table, index string) string { return table + " INDEXED BY " + index }

// One UPDATE numbers the next rows from last_seq + 1 (the trigger of
// migration 0007 raises last_seq in the same statement), so the offset of
// a service starting at the latest position is last_seq plus the rows
// waiting, all numbered after it.
func (d sqliteDialect) numbering(q *queries, _ string) {
	unnumbered := sqliteUnnumbered(q.events)
	q.seqProbe = "SELECT 1 FROM " + q.events + " WHERE " + unnumbered + " LIMIT 1"
	q.seqIsUpdate = true
	q.seqStep = "UPDATE " + q.events + " SET seq = n.seq FROM (" +
		"SELECT id, (SELECT last_seq FROM " + q.sequencer + " WHERE id = 1) + ROW_NUMBER() OVER (ORDER BY id) AS seq" +
		" FROM (SELECT id FROM " + q.events + " WHERE " + unnumbered + " ORDER BY id LIMIT " + strconv.Itoa(numberBatch) + ")) AS n" +
		" WHERE " + q.events + ".id = n.id AND " + q.events + ".seq IS NULL"
	q.seqRegister = q.r(d.insertIgnore("INSERT INTO "+q.services+
		" (name, consumed_seq, owner, epoch, version, lease_until, created_at, updated_at)"+
		" SELECT ?1, CASE WHEN ?2 < 0 THEN last_seq + (SELECT COUNT(*) FROM "+q.events+" WHERE "+unnumbered+") ELSE ?2 END,"+
		" '', 0, 0, 0, {now}, {now} FROM "+q.sequencer+" WHERE id = 1", "name"))
	q.oldestUnnumbered = "SELECT id FROM " + q.events + " WHERE " + unnumbered + " ORDER BY id LIMIT 1"
}
