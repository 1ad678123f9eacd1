package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/stdlib"
)

// statements counts the statements an instance sends (each Exec and
// Query, prepared or not, and each BEGIN, COMMIT and ROLLBACK), through a
// wrapper of the pgx driver.
var statements atomic.Int64

// byText counts statements by their text, when PART12_QSTATS is set.
var (
	byTextMu sync.Mutex
	byText   = map[string]int{}
	qstats   = os.Getenv("PART12_QSTATS") != ""
)

func countText(q string) {
	if !qstats {
		return
	}
	if len(q) > 90 {
		q = q[:90]
	}
	byTextMu.Lock()
	byText[q]++
	byTextMu.Unlock()
}

// dumpTexts prints the counts by text to stderr.
func dumpTexts() {
	if !qstats {
		return
	}
	byTextMu.Lock()
	defer byTextMu.Unlock()
	for q, n := range byText {
		fmt.Fprintf(os.Stderr, "%6d %s\n", n, q)
	}
}

type pgConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.NamedValueChecker
}

type countDriver struct{ driver.Driver }

func (d countDriver) Open(name string) (driver.Conn, error) {
	c, err := d.Driver.Open(name)
	if err != nil {
		return nil, err
	}
	return countConn{c.(pgConn)}, nil
}

type countConn struct{ pgConn }

func (c countConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	statements.Add(1)
	countText(q)
	return c.pgConn.ExecContext(ctx, q, args)
}

func (c countConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	statements.Add(1)
	countText(q)
	return c.pgConn.QueryContext(ctx, q, args)
}

func (c countConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	s, err := c.pgConn.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return countStmt{s.(pgStmt)}, nil
}

func (c countConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	statements.Add(1)
	tx, err := c.pgConn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return countTx{tx}, nil
}

type pgStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type countStmt struct{ pgStmt }

func (s countStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	statements.Add(1)
	return s.pgStmt.ExecContext(ctx, args)
}

func (s countStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	statements.Add(1)
	return s.pgStmt.QueryContext(ctx, args)
}

type countTx struct{ driver.Tx }

func (t countTx) Commit() error   { statements.Add(1); return t.Tx.Commit() }
func (t countTx) Rollback() error { statements.Add(1); return t.Tx.Rollback() }

func init() { sql.Register("pgx-counting", countDriver{stdlib.GetDefaultDriver()}) }
