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

func (mysqlDialect) lockSequencer(t string) string {
	return "SELECT last_seq FROM " + t + " WHERE id = 1 FOR UPDATE"
}

// MySQL has no UPDATE ... RETURNING and no data-modifying CTEs.
func (mysqlDialect) numberBatch(string, string) string { return "" }

func (mysqlDialect) beginWrite() string { return "BEGIN" }

func (mysqlDialect) insertIgnore(q, _ string) string {
	return "INSERT IGNORE" + q[len("INSERT"):]
}

// READ COMMITTED: plain SELECTs see only committed rows and take no gap locks.
func (mysqlDialect) txOptions() *sql.TxOptions { return readCommitted }

// The session's level (REPEATABLE READ by default) saves the round trip
// that setting READ COMMITTED costs: InnoDB takes the snapshot at the first
// plain SELECT, which follows the sequencer's locking read.
func (mysqlDialect) sequencerTxOptions() *sql.TxOptions { return nil }

func (mysqlDialect) rebind(q string) string { return q }

// InnoDB's statistics count the NULL seq values of every row ever
// unsequenced, so the optimizer may walk the primary key for
// "seq IS NULL ORDER BY id LIMIT n", expecting a match at once, and read the
// whole log on every poll. The hint keeps it on the seq index, whose NULL
// entries are exactly the unsequenced rows.
func (mysqlDialect) forceIndex(index string) string { return " FORCE INDEX (" + index + ")" }

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
