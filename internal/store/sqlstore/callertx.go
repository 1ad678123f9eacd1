package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/dddbus/eventbus/ddd"
	"gorm.io/gorm"

	"github.com/dddbus/eventbus/internal/store"
)

// CallerTx returns the connection of the transaction that ctx carries
// (ddd.ContextWithTx or ddd.ContextWithSQLTx) once it is known to be usable
// and on the bus's database; inCaller is false when ctx carries none.
//
// A transaction begun on the bus's own pool is accepted as it is. Any
// other (a second pool of the same DSN, a *sql.Tx of another *sql.DB) is
// identified by one query on its own connection, compared with the bus's
// database: same server, same database, and the bus's events table as the
// transaction's connection resolves it (schema, search_path, prefix). It
// reads no user table, so it takes no lock and cannot fail in a way that
// aborts a PostgreSQL transaction.
func (s *base) CallerTx(ctx context.Context) (_ store.Conn, inCaller bool, err error) {
	var conn gorm.ConnPool
	carried, ok := ddd.CarriedTx(ctx)
	if !ok {
		return nil, false, nil
	}
	var pool *sql.DB
	kind := ""
	switch tx := carried.(type) {
	case *gorm.DB:
		if tx == nil || tx.Config == nil || tx.Statement == nil || tx.Statement.ConnPool == nil {
			return nil, true, fmt.Errorf("%w: a nil or zero *gorm.DB (use the tx of db.Transaction or db.Begin)", store.ErrInvalidTransaction)
		}
		if _, ok := tx.Statement.ConnPool.(gorm.TxCommitter); !ok {
			return nil, true, fmt.Errorf("%w: the *gorm.DB is not in a transaction (use the tx of db.Transaction or db.Begin)", store.ErrInvalidTransaction)
		}
		conn = tx.Statement.ConnPool
		pool, _ = tx.DB()
		if tx.Dialector != nil {
			kind = tx.Dialector.Name()
		}
	case *sql.Tx:
		if tx == nil {
			return nil, true, fmt.Errorf("%w: a nil *sql.Tx", store.ErrInvalidTransaction)
		}
		conn, pool = tx, poolOf(tx)
		if pool != nil {
			kind = dialectOfDriver(pool.Driver())
		}
	}
	if pool == s.db {
		return conn, true, nil
	}
	// Another kind of database is told apart without a query, which would
	// be a syntax error there (and abort a PostgreSQL transaction).
	if kind != "" && kind != s.name {
		return nil, true, fmt.Errorf("%w: the transaction is on a %s database; the bus is on %s", ddd.ErrForeignTransaction, kind, s.name)
	}
	if err := s.sameDatabase(ctx, conn); err != nil {
		return nil, true, err
	}
	return conn, true, nil
}

// poolOf returns the pool tx was begun on, or nil if it cannot tell:
// database/sql does not expose it, so this reads the field GORM's DB()
// reads. Should a Go release rename it, tx is identified by query instead.
func poolOf(tx *sql.Tx) *sql.DB {
	f := reflect.ValueOf(tx).Elem().FieldByName("db")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*sql.DB]() {
		return nil
	}
	return (*sql.DB)(f.UnsafePointer())
}

// dialectOfDriver names the dialect of a database/sql driver by its
// package ("" when unknown): go-sql-driver/mysql, pgx or lib/pq, and the
// SQLite drivers.
func dialectOfDriver(d driver.Driver) string {
	rt := reflect.TypeOf(d)
	if rt == nil {
		return ""
	}
	path := strings.ToLower(derefPkgPath(rt))
	switch {
	case strings.Contains(path, "sqlite"):
		return "sqlite"
	case strings.Contains(path, "mysql"):
		return "mysql"
	case strings.Contains(path, "pgx"), strings.HasSuffix(path, "/pq"), strings.Contains(path, "postgres"):
		return "postgres"
	}
	return ""
}

func derefPkgPath(rt reflect.Type) string {
	for rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	return rt.PkgPath()
}

// dbIdentity is the bus's database as its own pool sees it, refreshed when
// a transaction's differs (after a server restart, say) before refusing.
type dbIdentity struct {
	mu sync.Mutex
	id string
}

// sameDatabase returns nil if conn's database is the bus's.
func (s *base) sameDatabase(ctx context.Context, conn gorm.ConnPool) error {
	theirs, err := s.eng.identify(ctx, conn)
	if err != nil {
		return fmt.Errorf("identify the transaction's database: %w", err)
	}
	s.ident.mu.Lock()
	defer s.ident.mu.Unlock()
	if theirs == s.ident.id && theirs != "" {
		return nil
	}
	ours, err := s.eng.identify(ctx, s.db)
	if err != nil {
		return fmt.Errorf("identify the bus's database: %w", err)
	}
	s.ident.id = ours
	if theirs != ours || theirs == "" {
		return fmt.Errorf("%w: the transaction is on %s; the bus is on %s", ddd.ErrForeignTransaction, describe(theirs), describe(ours))
	}
	return nil
}

func describe(id string) string {
	if id == "" {
		return "an unidentifiable database (in-memory SQLite)"
	}
	return id
}

type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func orNone(s sql.NullString) string {
	if !s.Valid || s.String == "" {
		return "none"
	}
	return s.String
}
