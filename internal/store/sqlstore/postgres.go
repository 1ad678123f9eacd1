package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
)

// postgresDialect serves PostgreSQL 13+.
type postgresDialect struct{}

func (postgresDialect) returningID() string { return " RETURNING id" }

func (postgresDialect) name() string { return "postgres" }

// clock_timestamp, not now(): now() is frozen at the start of the transaction.
func (postgresDialect) nowMillis() string {
	return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
}

func (postgresDialect) beginWrite() []string { return []string{"BEGIN ISOLATION LEVEL READ COMMITTED"} }

func (postgresDialect) insertIgnore(q, key string) string {
	return q + " ON CONFLICT (" + key + ") DO NOTHING"
}

func (postgresDialect) txOptions() *sql.TxOptions { return readCommitted }

func (postgresDialect) rebind(q string) string { return rebindDollar(q) }

func (postgresDialect) lockMigrations(ctx context.Context, conn *sql.Conn, prefix string) (func(), error) {
	key := "eventbus_migrate:" + prefix
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(hashtext(current_schema() || $1))", key); err != nil {
		return nil, fmt.Errorf("take migration lock: %w", err)
	}
	return func() {
		_, _ = conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock(hashtext(current_schema() || $1))", key)
	}, nil
}

func (postgresDialect) checkConn(context.Context, *sql.DB) error { return nil }

// Always: at REPEATABLE READ or SERIALIZABLE (default_transaction_isolation,
// which a role, a database or the DSN may set) a single UPDATE fails with
// SQLSTATE 40001 when a transaction that committed after its snapshot
// updated its row, instead of waiting and re-reading it, and a SERIALIZABLE
// read takes predicate locks that can fail it or the application's own
// SERIALIZABLE transactions. The cost is a BEGIN and a COMMIT per statement.
func (postgresDialect) ownTx(context.Context, *sql.DB) (bool, error) { return true, nil }

// pgx keeps a bounded cache of prepared statements on each connection by itself.
func (postgresDialect) prepares() bool { return false }

// No limit below the bus's MaxPayloadBytes: parameters take up to 1 GB.
func (postgresDialect) packetLimit(context.Context, *sql.DB) (int, error) { return 0, nil }

// The server's start time (microseconds), the database, and the oid of the
// events table as the connection's search_path resolves it. The table name
// is validated ([a-z][a-z0-9_]*) and written into the text: a query without
// arguments is one round trip on every driver.
func (postgresDialect) identify(ctx context.Context, q rowQuerier, events string) (string, error) {
	var a, c, d sql.NullString
	err := q.QueryRowContext(ctx, "SELECT pg_postmaster_start_time()::text, current_database(), to_regclass('"+
		events+"')::oid::text").Scan(&a, &c, &d)
	return fmt.Sprintf("PostgreSQL server started %s, database %s, table %s (oid %s)", a.String, c.String, events, orNone(d)), err
}

func (postgresDialect) tableExists(ctx context.Context, db *sql.DB, table string) bool {
	var n int
	return db.QueryRowContext(ctx, "SELECT COUNT(*) FROM (SELECT to_regclass($1) AS t) r WHERE t IS NOT NULL", table).Scan(&n) == nil && n > 0
}

// PostgreSQL's planner finds the index itself.
func (postgresDialect) useIndex(table, _ string) string { return table }

// The procedures of migration 0007; INOUT parameters come back as a row.
// The sequencer's integers go in the statement text (see numberBatch).
func (postgresDialect) numbering(q *queries, prefix string) {
	batch, span := strconv.Itoa(numberBatch), strconv.Itoa(numberSpan)
	q.seqStep = "CALL " + prefix + "sequence(" + batch + ", " + span + ", NULL, NULL)"
	q.seqRegister = q.r("CALL " + prefix + "register_service(?, ?, {now}, " + batch + ", " + span + ", NULL)")
	q.seqTidy = func(settle, expire, sweep int64) string {
		return fmt.Sprintf("CALL %ssequence_tidy(%d, %d, %d, %s, NULL)", prefix, settle, expire, sweep, batch)
	}
}
