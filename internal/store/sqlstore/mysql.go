package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/dddbus/eventbus/internal/store"
)

// mysqlDialect serves MySQL 8 and MariaDB 10.6+ (InnoDB).
type mysqlDialect struct{}

func (mysqlDialect) returningID() string { return "" }

func (mysqlDialect) name() string { return "mysql" }

// The statement's clock in UTC, as milliseconds since the epoch by plain
// DATETIME arithmetic. UTC_TIMESTAMP does not depend on the session's time
// zone; UNIX_TIMESTAMP(CURRENT_TIMESTAMP) does: it converts local time
// back to UTC, and in a zone with DST the repeated autumn hour maps to one
// instant only, so the clock would jump by an hour.
func (mysqlDialect) nowMillis() string {
	return "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)"
}

// The level applies to the next transaction of the session only.
func (mysqlDialect) beginWrite() []string {
	return []string{"SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "START TRANSACTION"}
}

func (mysqlDialect) insertIgnore(q, _ string) string {
	return "INSERT IGNORE" + q[len("INSERT"):]
}

// READ COMMITTED: plain SELECTs see only committed rows and take no gap locks.
func (mysqlDialect) txOptions() *sql.TxOptions { return readCommitted }

func (mysqlDialect) rebind(q string) string { return q }

func (mysqlDialect) lockMigrations(ctx context.Context, conn *sql.Conn, prefix string) (func(), error) {
	// Lock names are server-wide and at most 64 characters: hash the
	// database and prefix into one.
	var name string
	if err := conn.QueryRowContext(ctx, "SELECT SHA1(CONCAT(COALESCE(DATABASE(), ''), ':', ?))", prefix).Scan(&name); err != nil {
		return nil, fmt.Errorf("name migration lock: %w", err)
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 120)", name).Scan(&got); err != nil {
		return nil, fmt.Errorf("take migration lock: %w", err)
	}
	if got.Int64 != 1 {
		return nil, fmt.Errorf("take migration lock: timed out waiting for %s", name)
	}
	return func() { _, _ = conn.ExecContext(context.Background(), "SELECT RELEASE_LOCK(?)", name) }, nil
}

func (mysqlDialect) checkConn(context.Context, *sql.DB) error { return nil }

// In autocommit mode a statement run alone is its own transaction, and
// InnoDB runs the bus's single statements the same at READ COMMITTED,
// REPEATABLE READ and SERIALIZABLE, so they need no BEGIN and COMMIT:
//   - a plain SELECT is a consistent, nonlocking read of what was committed
//     when it started (SERIALIZABLE makes plain reads locking only when
//     autocommit is off);
//   - an UPDATE reads the latest committed version of the rows it changes
//     and locks them, at every level; the bus's single UPDATEs find their
//     row by primary key (a service by name, a transaction by id), which
//     locks that record alone, without a gap lock, at every level, and
//     InnoDB never fails such an UPDATE for a concurrent one (it waits).
//
// Only READ UNCOMMITTED (a SELECT would see uncommitted rows, such as the
// numbers of a sequencer batch that may roll back) and autocommit off (the
// statement would open a transaction and leave it open) differ: with
// either as the session's default, every statement gets a READ COMMITTED
// transaction of its own.
func (mysqlDialect) ownTx(ctx context.Context, db *sql.DB) (bool, error) {
	var autocommit int
	var level string
	// transaction_isolation: MySQL 8, MariaDB 11.1+; tx_isolation before.
	err := db.QueryRowContext(ctx, "SELECT @@SESSION.autocommit, @@SESSION.transaction_isolation").Scan(&autocommit, &level)
	if err != nil {
		err = db.QueryRowContext(ctx, "SELECT @@SESSION.autocommit, @@SESSION.tx_isolation").Scan(&autocommit, &level)
	}
	if err != nil {
		return false, fmt.Errorf("%w: read the session's isolation level: %v", store.ErrInvalidDB, err)
	}
	return autocommit == 0 || strings.EqualFold(level, "READ-UNCOMMITTED"), nil
}

// go-sql-driver/mysql would prepare, run and close every statement that
// has arguments: three commands, two round trips.
func (mysqlDialect) prepares() bool { return true }

func (mysqlDialect) packetLimit(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&n); err != nil {
		return 0, fmt.Errorf("%w: read max_allowed_packet: %v", store.ErrInvalidDB, err)
	}
	return n, nil
}

// The server's host name, port, data directory, id and start time (from
// UUID_SHORT), and the current database. UUID_SHORT's bits above the low
// 24 are the server id and start time: servers cloned with the same host
// name, port and data directory still differ, as long as they did not
// start in the same second. The events table is not looked up: on the
// same server and database it is the bus's (information_schema would
// double the query's cost).
func (mysqlDialect) identify(ctx context.Context, q rowQuerier, _ string) (string, error) {
	var a, c sql.NullString
	err := q.QueryRowContext(ctx, "SELECT CONCAT(@@hostname, ':', @@port, ' ', @@datadir, ' #', UUID_SHORT() >> 24), DATABASE()").Scan(&a, &c)
	return fmt.Sprintf("MySQL server %s, database %s", a.String, orNone(c)), err
}

func (mysqlDialect) tableExists(ctx context.Context, db *sql.DB, table string) bool {
	var n int
	return db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table).Scan(&n) == nil && n > 0
}

func (mysqlDialect) useIndex(table, index string) string {
	return table + " FORCE INDEX (" + index + ")"
}

// The procedures of migration 0007; each returns one row. MariaDB runs a
// procedure call slowly (~0.2 ms), so a plain read first says whether the
// open run holds a committed row or there are holes (which the procedure
// then probes one by one). It is a hint: a consistent read at any level (a
// dirty one at READ UNCOMMITTED only calls the procedure for nothing), and
// takes no lock. The integers go in the statement text: go-sql-driver/mysql
// would otherwise prepare, run and close every statement that has
// arguments (three round trips).
func (mysqlDialect) numbering(q *queries, prefix string) {
	batch := strconv.Itoa(numberBatch)
	runs := prefix + "sequencer_runs"
	latest := "(SELECT MAX(version) FROM " + runs + ")"
	q.seqProbe = "SELECT 1 FROM DUAL WHERE EXISTS (SELECT 1 FROM " + q.events + " FORCE INDEX (" + prefix + "events_seq)" +
		" WHERE seq IS NULL AND id >= (SELECT MAX(lo) FROM " + runs + " WHERE version = " + latest + "))" +
		" OR (SELECT COUNT(*) FROM " + runs + " WHERE version = " + latest + ") > 1"
	q.seqStep = "CALL " + prefix + "sequence(" + batch + ")"
	q.seqRegister = q.r("CALL " + prefix + "register_service(?, ?, {now}, " + batch + ")")
	q.seqTidy = func(settle, expire, sweep int64) string {
		return fmt.Sprintf("CALL %ssequence_tidy(%d, %d, %d, %s)", prefix, settle, expire, sweep, batch)
	}
}
