package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// dialect holds what differs between the supported databases. Queries are
// written once with "?" placeholders (see queries.go) and adapted here;
// postgres.go, mysql.go and sqlite.go each hold one database's choices.
type dialect interface {
	// name is the GORM dialector name and the migrations directory.
	name() string
	// nowMillis is an SQL expression for the database clock in Unix milliseconds.
	nowMillis() string
	// beginWrite are the statements that start a READ COMMITTED
	// transaction on a raw connection, holding the write lock from its
	// first statement where the database needs it (SQLite).
	beginWrite() []string
	// insertIgnore turns "INSERT INTO t (cols) SELECT ..." into an insert
	// that does nothing when key already exists.
	insertIgnore(insertSelect, key string) string
	// returningID is appended to an INSERT to return the new row's id
	// ("" where the driver reports it through LastInsertId instead).
	returningID() string
	// txOptions are the options of the bus's own transactions.
	txOptions() *sql.TxOptions
	// rebind rewrites "?" placeholders into the driver's form.
	rebind(query string) string
	// lockMigrations takes a lock that serialises migrations across processes
	// on conn, and returns its release.
	lockMigrations(ctx context.Context, conn *sql.Conn, prefix string) (func(), error)
	// checkConn verifies settings the guarantees depend on.
	checkConn(ctx context.Context, db *sql.DB) error
	// ownTx reports whether a statement run on its own needs a READ
	// COMMITTED transaction of its own to behave the same whatever the
	// session's default isolation level (see exec.go).
	ownTx(ctx context.Context, db *sql.DB) (bool, error)
	// prepares reports whether the bus keeps its hot statements prepared
	// (see stmtCache).
	prepares() bool
	// packetLimit returns the server's largest packet (0: no limit that
	// matters; see packet.go).
	packetLimit(ctx context.Context, db *sql.DB) (int, error)
	// identify describes the database that q's connection writes the
	// tables to ("": it cannot be told apart); see callertx.go.
	identify(ctx context.Context, q rowQuerier, events string) (string, error)
	// tableExists reports whether table exists where db's connections
	// resolve unqualified names.
	tableExists(ctx context.Context, db *sql.DB, table string) bool
	// useIndex is table, told to read through index where the planner
	// would not by itself.
	useIndex(table, index string) string
	// numbering sets q's sequencer statements: its step, probe,
	// registration and upkeep (see sequencer.go).
	numbering(q *queries, prefix string)
}

// rebindDollar rewrites ? into $1, $2, ... Queries in this package never
// contain ? inside string literals.
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
