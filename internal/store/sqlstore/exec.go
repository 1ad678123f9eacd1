package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/dddbus/eventbus/internal/store"
)

// How the bus runs a statement; exec, query and queryRow are the one place
// that decides it.
//
//   - In a transaction (on is the bus's *sql.Tx, or the connection of a
//     caller's transaction), it runs on that transaction's connection and
//     never waits for another connection of the pool.
//   - Otherwise (on is nil) it is a statement of its own, at READ COMMITTED:
//     alone (autocommit) where the database's store has shown that this is
//     the same whatever the session's default level (MySQL, SQLite), else in
//     a READ COMMITTED transaction of its own (PostgreSQL, where a single
//     UPDATE at REPEATABLE READ or SERIALIZABLE fails with SQLSTATE 40001
//     when another transaction updated its row, and a SERIALIZABLE read can
//     fail or make the application's transactions fail). See base.ownTx,
//     set by each database's open function.
//   - It is prepared if it is one of the hot statements (queries.hot) and
//     the pool's stmtCache has it ready; otherwise it runs unprepared.
//
// Transactions the bus begins itself (inTx) are READ COMMITTED too.

// txConn is an open transaction's connection: the bus's own *sql.Tx, or
// the gorm.ConnPool of a caller's transaction.
type txConn = store.Conn

// exec runs a statement on on (nil: on its own; see above).
func (s *base) exec(ctx context.Context, on txConn, query string, args ...any) (sql.Result, error) {
	if on == nil && s.ownTx {
		var res sql.Result
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			res, err = s.exec(ctx, tx, query, args...)
			return err
		})
		return res, err
	}
	if st := s.prepared(ctx, on, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	if on == nil {
		return s.db.ExecContext(ctx, query, args...)
	}
	return on.ExecContext(ctx, query, args...)
}

// query runs a query on on (nil: on its own; see above) and calls row for
// each row of the result. The rows are closed when it returns.
func (s *base) query(ctx context.Context, on txConn, query string, args []any, row func(*sql.Rows) error) error {
	if on == nil && s.ownTx {
		return s.inTx(ctx, func(tx *sql.Tx) error { return s.query(ctx, tx, query, args, row) })
	}
	var rows *sql.Rows
	var err error
	switch st := s.prepared(ctx, on, query); {
	case st != nil:
		rows, err = st.QueryContext(ctx, args...)
	case on == nil:
		rows, err = s.db.QueryContext(ctx, query, args...)
	default:
		rows, err = on.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// queryRow scans the first row of a query into dest; sql.ErrNoRows if
// there is none.
func (s *base) queryRow(ctx context.Context, on txConn, query string, args []any, dest ...any) error {
	found := false
	err := s.query(ctx, on, query, args, func(rows *sql.Rows) error {
		if found {
			return nil
		}
		found = true
		return rows.Scan(dest...)
	})
	if err == nil && !found {
		return sql.ErrNoRows
	}
	return err
}

// queryAll returns the single column of every row of a query.
func queryAll[T any](ctx context.Context, s *base, on txConn, query string, args ...any) ([]T, error) {
	var out []T
	err := s.query(ctx, on, query, args, func(rows *sql.Rows) error {
		var v T
		if err := rows.Scan(&v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// prepared returns query prepared for on, or nil to run it unprepared.
func (s *base) prepared(ctx context.Context, on txConn, query string) *sql.Stmt {
	if !s.q.hot[query] {
		return nil
	}
	st := s.stmts.get(query)
	if st == nil {
		return nil
	}
	switch c := on.(type) {
	case nil:
		return st
	case *sql.Tx:
		if poolOf(c) != s.db {
			return nil // a caller's transaction from another pool: the statement is not its pool's
		}
		// Prepared on the transaction's own connection if it is not yet.
		return c.StmtContext(ctx, st)
	}
	return nil // a caller's connection of another kind (GORM's PreparedStmtTX, say)
}

// inTx runs fn in one of the bus's own transactions (READ COMMITTED where
// the database has levels). On SQLite fn's first statement must be a write,
// so that it takes the write lock at once whatever the DSN's _txlock is.
func (s *base) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, s.txOpts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
