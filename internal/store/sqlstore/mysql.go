package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/dddbus/eventbus/internal/store"
)

// mysqlStore is the store on MySQL 8 and MariaDB 10.6+ (InnoDB): the
// server's packet limit, INSERT IGNORE, index hints, statements kept
// prepared, and a probe before the sequencer's procedure
// (mysql_sequencer.go). No notifications: buses poll ChangeMark.
type mysqlStore struct {
	base
	polled

	seqProbe, seqStep, seqRegister string // the sequencer's (mysql_sequencer.go)
}

var _ impl = (*mysqlStore)(nil)

// The statement's clock in UTC, as milliseconds since the epoch by plain
// DATETIME arithmetic. UTC_TIMESTAMP does not depend on the session's time
// zone; UNIX_TIMESTAMP(CURRENT_TIMESTAMP) does: it converts local time
// back to UTC, and in a zone with DST the repeated autumn hour maps to one
// instant only, so the clock would jump by an hour.
var mysqlText = sqlText{now: "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)", bind: questionMarks}

var mysqlDatabase = database{
	open: openMySQL,
	text: mysqlText,
	// The level applies to the next transaction of the session only.
	beginWrite:     []string{"SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "START TRANSACTION"},
	lockMigrations: mysqlLockMigrations,
	tableExists:    mysqlTableExists,
}

// openMySQL: the bus's transactions are READ COMMITTED (plain SELECTs see
// only committed rows and take no gap locks). Its hot statements are kept
// prepared: go-sql-driver/mysql would prepare, run and close every
// statement that has arguments (three commands, two round trips).
func openMySQL(ctx context.Context, db *sql.DB, prefix string) (impl, error) {
	s := &mysqlStore{polled: polled{dialect: "mysql"}}
	s.base = newBase(db, "mysql", prefix, mysqlText, s)
	s.txOpts, s.stmts = readCommitted, stmtCacheFor(db)
	var err error
	if s.ownTx, err = mysqlOwnTx(ctx, db); err != nil {
		return nil, err
	}
	s.sequencing()
	return s, nil
}

// mysqlOwnTx reports whether a statement run on its own needs a READ
// COMMITTED transaction of its own. In autocommit mode a statement run
// alone is its own transaction, and InnoDB runs the bus's single
// statements the same at READ COMMITTED, REPEATABLE READ and SERIALIZABLE,
// so they need no BEGIN and COMMIT:
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
func mysqlOwnTx(ctx context.Context, db *sql.DB) (bool, error) {
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

// Init reads the server's packet limit, checked against maxPayloadBytes
// (see packet.go), and the database's identity.
func (s *mysqlStore) Init(ctx context.Context, maxPayloadBytes int) error {
	var limit int
	if err := s.db.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&limit); err != nil {
		return fmt.Errorf("%w: read max_allowed_packet: %v", store.ErrInvalidDB, err)
	}
	if err := s.setPacketLimit(limit, maxPayloadBytes); err != nil {
		return err
	}
	s.initIdentity(ctx)
	return nil
}

func (s *mysqlStore) insertTxRow(ctx context.Context, on txConn, args []any) (int64, error) {
	return s.insertTxLastID(ctx, on, args)
}

func (s *mysqlStore) insertRetries(n int) string {
	return s.q.sql("INSERT IGNORE INTO " + s.q.retries + s.q.retryValues(n))
}

func (s *mysqlStore) addMember() string {
	return s.q.r("INSERT IGNORE INTO " + s.prefix + "members (service, instance, seen_until) SELECT ?, ?, {now} + ?")
}

// Told to use transactions_due: the planner walks the primary key in id
// order instead, through every resolved transaction kept for RetentionTime.
func (s *mysqlStore) listTxs(n int) string {
	return s.q.sql("SELECT " + txInfoCols + " FROM " + s.q.txs + " FORCE INDEX (" + s.prefix + "transactions_due)" +
		" WHERE service = ? AND state IN " + in(n) + " AND id > ? ORDER BY id LIMIT ?")
}

func (s *mysqlStore) oldestUnsequenced() string { return s.unsequencedByIndex() }

// identify: the server's host name, port, data directory, id and start
// time (from UUID_SHORT), and the current database. UUID_SHORT's bits
// above the low 24 are the server id and start time: servers cloned with
// the same host name, port and data directory still differ, as long as
// they did not start in the same second. The events table is not looked
// up: on the same server and database it is the bus's (information_schema
// would double the query's cost).
func (s *mysqlStore) identify(ctx context.Context, q rowQuerier) (string, error) {
	var a, c sql.NullString
	err := q.QueryRowContext(ctx, "SELECT CONCAT(@@hostname, ':', @@port, ' ', @@datadir, ' #', UUID_SHORT() >> 24), DATABASE()").Scan(&a, &c)
	return fmt.Sprintf("MySQL server %s, database %s", a.String, orNone(c)), err
}

func mysqlLockMigrations(ctx context.Context, conn *sql.Conn, prefix string) (func(), error) {
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

func mysqlTableExists(ctx context.Context, db *sql.DB, table string) bool {
	var n int
	return db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table).Scan(&n) == nil && n > 0
}
