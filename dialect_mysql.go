package eventbus

import (
	"context"
	"database/sql"
	"fmt"
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

func (mysqlDialect) beginWrite() string { return "BEGIN" }

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

// The NULL entries of events_seq (seq, id) are these rows, by id.
func (mysqlDialect) unnumbered(string) string { return "seq IS NULL" }

func (mysqlDialect) checkConn(context.Context, *sql.DB) error { return nil }
