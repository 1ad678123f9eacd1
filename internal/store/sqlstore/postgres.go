package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"

	"github.com/dddbus/eventbus/internal/store"
)

// postgresStore is the store on PostgreSQL 13+: $n placeholders, the
// sequencer's procedures, LISTEN/NOTIFY (postgres_notify.go), RETURNING id.
type postgresStore struct {
	base

	seqStep, seqRegister string // the procedures of migration 0007
	insertTxReturning    string // insertTx, returning the new row's id
	channel              string // the log's notification channel; set by Init
}

var _ impl = (*postgresStore)(nil)

// clock_timestamp, not now(): now() is frozen at the start of the transaction.
var postgresText = sqlText{now: "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)", bind: rebindDollar}

var postgresDatabase = database{
	open:           openPostgres,
	text:           postgresText,
	beginWrite:     []string{"BEGIN ISOLATION LEVEL READ COMMITTED"},
	lockMigrations: postgresLockMigrations,
	tableExists:    postgresTableExists,
}

// openPostgres needs no check of the connection: the store sets the
// isolation level of everything it runs.
//
// Every statement of its own runs in a READ COMMITTED transaction (ownTx):
// at REPEATABLE READ or SERIALIZABLE (default_transaction_isolation,
// which a role, a database or the DSN may set) a single UPDATE fails with
// SQLSTATE 40001 when a transaction that committed after its snapshot
// updated its row, instead of waiting and re-reading it, and a SERIALIZABLE
// read takes predicate locks that can fail it or the application's own
// SERIALIZABLE transactions. The cost is a BEGIN and a COMMIT per statement.
// Nothing is kept prepared: pgx keeps a bounded cache of prepared
// statements on each connection by itself.
//
// The sequencer's integers go in the statement text (see sequenceBatch);
// INOUT parameters come back as a row.
func openPostgres(_ context.Context, db *sql.DB, prefix string) (impl, error) {
	s := &postgresStore{}
	s.base = newBase(db, "postgres", prefix, postgresText, s)
	s.txOpts, s.ownTx = readCommitted, true
	batch, span := strconv.Itoa(sequenceBatch), strconv.Itoa(sequenceSpan)
	s.seqStep = "CALL " + prefix + "sequence(" + batch + ", " + span + ", NULL, NULL)"
	s.seqRegister = s.q.r("CALL " + prefix + "register_service(?, ?, {now}, " + batch + ", " + span + ", NULL)")
	s.insertTxReturning = s.q.insertTx + " RETURNING id"
	return s, nil
}

// Init reads the database's identity and names the notification channel
// after it.
func (s *postgresStore) Init(ctx context.Context, _ int) error {
	s.initIdentity(ctx)
	s.setChannel()
	return nil
}

// RegisterService runs register_service.
func (s *postgresStore) RegisterService(ctx context.Context, service string, start int64) error {
	return s.registerByCall(ctx, s.seqRegister, service, start)
}

// Sequence runs one step of the sequence procedure, which looks for work itself.
func (s *postgresStore) Sequence(ctx context.Context) (int, bool, error) {
	return s.stepByCall(ctx, s.seqStep)
}

// TidyRuns runs sequence_tidy.
func (s *postgresStore) TidyRuns(ctx context.Context, p store.TidyParams) (bool, error) {
	return s.tidyByCall(ctx, p, func(sweep int64) string {
		return fmt.Sprintf("CALL %ssequence_tidy(%d, %d, %d, %d, NULL)", s.prefix, p.Settle, p.Expire, sweep, sequenceBatch)
	})
}

func (s *postgresStore) insertTxRow(ctx context.Context, on txConn, args []any) (int64, error) {
	var id int64
	err := s.queryRow(ctx, on, s.insertTxReturning, args, &id)
	return id, err
}

func (s *postgresStore) insertRetries(n int) string {
	return s.q.sql("INSERT INTO " + s.q.retries + s.q.retryValues(n) + " ON CONFLICT (service, event_pk) DO NOTHING")
}

func (s *postgresStore) addMember() string {
	return s.q.r("INSERT INTO " + s.prefix + "members (service, instance, seen_until) SELECT ?, ?, {now} + ?" +
		" ON CONFLICT (service, instance) DO NOTHING")
}

// PostgreSQL's planner finds transactions_due by itself.
func (s *postgresStore) listTxs(n int) string {
	return s.q.sql("SELECT " + txInfoCols + " FROM " + s.q.txs + " WHERE service = ? AND state IN " + in(n) + " AND id > ? ORDER BY id LIMIT ?")
}

func (s *postgresStore) oldestUnsequenced() string { return s.unsequencedByIndex() }

// identify: the server's start time (microseconds), the database, and the
// oid of the events table as the connection's search_path resolves it.
// The table name is validated ([a-z][a-z0-9_]*) and written into the
// text: a query without arguments is one round trip on every driver.
func (s *postgresStore) identify(ctx context.Context, q rowQuerier) (string, error) {
	var a, c, d sql.NullString
	err := q.QueryRowContext(ctx, "SELECT pg_postmaster_start_time()::text, current_database(), to_regclass('"+
		s.q.events+"')::oid::text").Scan(&a, &c, &d)
	return fmt.Sprintf("PostgreSQL server started %s, database %s, table %s (oid %s)", a.String, c.String, s.q.events, orNone(d)), err
}

func postgresLockMigrations(ctx context.Context, conn *sql.Conn, prefix string) (func(), error) {
	key := "eventbus_migrate:" + prefix
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(hashtext(current_schema() || $1))", key); err != nil {
		return nil, fmt.Errorf("take migration lock: %w", err)
	}
	return func() {
		_, _ = conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock(hashtext(current_schema() || $1))", key)
	}, nil
}

func postgresTableExists(ctx context.Context, db *sql.DB, table string) bool {
	var n int
	return db.QueryRowContext(ctx, "SELECT COUNT(*) FROM (SELECT to_regclass($1) AS t) r WHERE t IS NOT NULL", table).Scan(&n) == nil && n > 0
}
