package eventbus

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"gorm.io/gorm"
)

// dialect holds what differs between the supported databases. Queries are
// written once with "?" placeholders (see queries.go) and adapted here.
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
	// session's default isolation level (see sqlutil.go).
	ownTx(ctx context.Context, db *sql.DB) (bool, error)
	// prepares reports whether the bus keeps its hot statements prepared
	// (see stmtCache).
	prepares() bool
}

func dialectOf(db *gorm.DB) (dialect, error) {
	if db == nil || db.Config == nil || db.Dialector == nil {
		return nil, fmt.Errorf("%w: a nil or zero *gorm.DB (open it with gorm.Open)", ErrInvalidDB)
	}
	switch n := db.Dialector.Name(); n {
	case "sqlite":
		return sqliteDialect{}, nil
	case "mysql":
		return mysqlDialect{}, nil
	case "postgres":
		return postgresDialect{}, nil
	default:
		return nil, fmt.Errorf("%w: unsupported dialect %q (want sqlite, mysql or postgres)", ErrInvalidDB, n)
	}
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
