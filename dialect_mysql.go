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

// UNIX_TIMESTAMP of a fractional timestamp keeps the fraction; the session
// time zone cancels out.
func (mysqlDialect) nowMillis() string {
	return "CAST(UNIX_TIMESTAMP(CURRENT_TIMESTAMP(3)) * 1000 AS SIGNED)"
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

func (mysqlDialect) checkConn(context.Context, *sql.DB) error { return nil }
