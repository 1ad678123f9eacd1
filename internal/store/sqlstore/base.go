package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// base is what the three stores share: the pool, the portable statements
// (queries.go) and the operations built on them. Each database's store
// embeds it and sets, in its constructor, how its statements run (txOpts,
// ownTx, stmts).
type base struct {
	db     *sql.DB
	name   string // the GORM dialector name: "sqlite", "mysql" or "postgres"
	eng    engine // the store that embeds this base
	q      *queries
	pq     partitionQueries
	prefix string

	txOpts *sql.TxOptions // of the bus's own transactions
	stmts  *stmtCache     // shared with the other stores of db; nil: nothing kept prepared
	ownTx  bool           // a statement of its own needs a transaction of its own (see exec.go)

	// MySQL's max_allowed_packet, and what of it one INSERT's rows may take
	// (0 elsewhere: no limit below the bus's MaxPayloadBytes); see packet.go.
	packetBytes, packetBudget int

	// The database, to recognise callers' transactions on it (callertx.go).
	ident dbIdentity
	// The database's identity with the prefix (wakes.go).
	wakeID string
}

// engine is what base's shared operations ask of the database under them:
// the one statement or step, inside an otherwise shared operation, that
// each database writes its own way. Only these: an operation whose whole
// path differs is a method of the database's store instead. Go's embedding
// gives base no view of the type that embeds it, hence this interface.
type engine interface {
	// identify describes the database that q's connection writes the
	// tables to ("": it cannot be told apart); see CallerTx.
	identify(ctx context.Context, q rowQuerier) (string, error)
	// insertTxRow inserts a pending transaction's row on on and returns
	// its id (BeginTx; args are insertTx's).
	insertTxRow(ctx context.Context, on txConn, args []any) (int64, error)
	// insertRetries is the INSERT of n retry rows that keeps a row
	// already stored as it is (a batch redone after a commit whose outcome
	// was unknown); see CommitOffset.
	insertRetries(n int) string
	// addMember is the INSERT of a service's member that keeps an existing
	// row (ReportMember).
	addMember() string
	// listTxs pages a service's transactions in n states through
	// transactions_due (ListTxs).
	listTxs(n int) string
	// oldestUnsequenced selects the lowest unsequenced id (Lags).
	oldestUnsequenced() string
}

func newBase(db *sql.DB, name, prefix string, text sqlText, eng engine) base {
	q := newQueries(text, prefix)
	return base{db: db, name: name, eng: eng, q: q, pq: newPartitionQueries(q, prefix), prefix: prefix}
}

// Dialect names the store's database.
func (s *base) Dialect() string { return s.name }

// sqlText is how a database writes the portable statements: the two things
// in them that differ, given to newQueries as values.
type sqlText struct {
	now  string              // the database clock in Unix milliseconds
	bind func(string) string // rewrites "?" placeholders into the driver's form
}

// questionMarks keeps "?" placeholders (MySQL, SQLite).
func questionMarks(q string) string { return q }

// rebindDollar rewrites ? into $1, $2, ... (PostgreSQL). Queries in this
// package never contain ? inside string literals.
func rebindDollar(q string) string {
	n := strings.Count(q, "?")
	if n == 0 {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + n*3)
	i := 0
	for _, r := range q {
		if r == '?' {
			i++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(i))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

var readCommitted = &sql.TxOptions{Isolation: sql.LevelReadCommitted}

// insertTxLastID inserts a transaction's row and reads its id from the
// driver (MySQL, SQLite: no RETURNING needed).
func (s *base) insertTxLastID(ctx context.Context, on txConn, args []any) (int64, error) {
	res, err := on.ExecContext(ctx, s.q.insertTx, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// unsequencedByIndex selects the lowest unsequenced id through events_seq
// (PostgreSQL, MySQL). Lags only, not a poll's path: it may walk dead index
// entries behind a long snapshot.
func (s *base) unsequencedByIndex() string {
	return "SELECT id FROM " + s.q.events + " WHERE seq IS NULL ORDER BY id LIMIT 1"
}
