package eventbus

import (
	"context"
	"database/sql"
	"fmt"
)

// postgresDialect serves PostgreSQL 13+.
type postgresDialect struct{}

func (postgresDialect) returningID() string { return " RETURNING id" }

func (postgresDialect) name() string { return "postgres" }

// clock_timestamp, not now(): now() is frozen at the start of the transaction.
func (postgresDialect) nowMillis() string {
	return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
}

// The sequencer's commit need not wait for its WAL flush: a consumer can only
// make progress past these numbers durable with a later synchronous commit,
// and WAL is flushed in order, so a crash cannot keep a consumer's offset
// while losing the numbers it covers (they would be given again, and the
// events delivered again: at-least-once holds).
func (postgresDialect) lockSequencer(t string) string {
	return "WITH async AS (SELECT set_config('synchronous_commit', 'off', true))" +
		" UPDATE " + t + " SET last_seq = last_seq FROM async WHERE id = 1 RETURNING last_seq"
}

// One statement: the lock is already held, so its snapshot sees every row
// committed before it, and no other sequencer can run meanwhile.
func (postgresDialect) numberBatch(events, sequencer string) string {
	return "WITH picked AS (SELECT id FROM " + events + " WHERE seq IS NULL ORDER BY id LIMIT $2)," +
		" lo AS (SELECT MIN(id) AS id FROM picked)," +
		" numbered AS (UPDATE " + events + " e SET seq = e.id - lo.id + $1 + 1 FROM picked, lo" +
		" WHERE e.id = picked.id AND e.seq IS NULL RETURNING e.seq)" +
		" UPDATE " + sequencer + " SET last_seq = COALESCE((SELECT MAX(seq) FROM numbered), last_seq) WHERE id = 1" +
		" RETURNING last_seq, (SELECT COUNT(*) FROM numbered)"
}

func (postgresDialect) beginWrite() string { return "BEGIN" }

func (postgresDialect) insertIgnore(q, key string) string {
	return q + " ON CONFLICT (" + key + ") DO NOTHING"
}

func (postgresDialect) txOptions() *sql.TxOptions { return readCommitted }

func (postgresDialect) sequencerTxOptions() *sql.TxOptions { return readCommitted }

func (postgresDialect) forceIndex(string) string { return "" }

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
