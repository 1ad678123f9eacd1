//go:build linux

package conformance

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/dddbus/eventbus"
	mysqldrv "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// freezeNetConn is a connection to a server whose writes go through a freezer.
type freezeNetConn struct {
	net.Conn
	f *freezer
}

func (c *freezeNetConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.f.after(b, nil)
	return n, err
}

func (f *freezer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &freezeNetConn{Conn: c, f: f}, nil
}

// freezeSQLiteConn runs statements on SQLite through a freezer, after they
// return: for an embedded database, that is when they were "sent". Only
// outside a transaction: a process frozen inside one of SQLite's write
// transactions holds the database's one write lock, which stops every
// writer whatever the sequencer does (the test is about what the
// sequencer holds, and this once froze the child in another write).
type freezeSQLiteConn struct {
	*sqlite3.SQLiteConn
	f *freezer
}

func (c *freezeSQLiteConn) after(q string) {
	if c.SQLiteConn.AutoCommit() {
		c.f.after([]byte(q), func() string { return sqliteConnState(c.SQLiteConn) })
	}
}

func (c *freezeSQLiteConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	r, err := c.SQLiteConn.ExecContext(ctx, q, args)
	c.after(q)
	return r, err
}

func (c *freezeSQLiteConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	r, err := c.SQLiteConn.QueryContext(ctx, q, args)
	return c.afterRows(q, r, err)
}

// afterRows freezes once a query's rows are closed: until then its
// statement runs, and a write with RETURNING holds the write lock.
func (c *freezeSQLiteConn) afterRows(q string, r driver.Rows, err error) (driver.Rows, error) {
	if err != nil {
		c.after(q)
		return r, err
	}
	return &freezeSQLiteRows{Rows: r, done: func() { c.after(q) }}, nil
}

type freezeSQLiteRows struct {
	driver.Rows
	done func()
}

func (r *freezeSQLiteRows) Close() error {
	err := r.Rows.Close()
	r.done()
	return err
}

// PrepareContext wraps prepared statements too: the bus runs its frequent
// statements prepared.
func (c *freezeSQLiteConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	st, err := c.SQLiteConn.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &freezeSQLiteStmt{Stmt: st, q: q, c: c}, nil
}

func (c *freezeSQLiteConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

type freezeSQLiteStmt struct {
	driver.Stmt
	q string
	c *freezeSQLiteConn
}

func (s *freezeSQLiteStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	r, err := s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
	s.c.after(s.q)
	return r, err
}

func (s *freezeSQLiteStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	r, err := s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	return s.c.afterRows(s.q, r, err)
}

type freezeSQLiteDriver struct {
	sqlite3.SQLiteDriver
	f *freezer
}

func (d *freezeSQLiteDriver) Open(name string) (driver.Conn, error) {
	c, err := d.SQLiteDriver.Open(name)
	if err != nil {
		return nil, err
	}
	return &freezeSQLiteConn{SQLiteConn: c.(*sqlite3.SQLiteConn), f: d.f}, nil
}

var registerFreezing sync.Once

// openFreezing opens a pool to the child's database whose connections go
// through f. PostgreSQL uses the simple protocol, so that every statement's
// text is on the wire (not only when it is first prepared).
func openFreezing(t testing.TB, c frozenChild, f *freezer) *gorm.DB {
	t.Helper()
	registerFreezing.Do(func() {
		mysqldrv.RegisterDialContext("freezetcp", func(ctx context.Context, addr string) (net.Conn, error) {
			return f.dial(ctx, "tcp", addr)
		})
		sql.Register("sqlite3_freeze", &freezeSQLiteDriver{f: f})
	})
	var d gorm.Dialector
	switch c.Dialect {
	case "mysql":
		cfg, err := mysqldrv.ParseDSN(c.DSN)
		must(t, err)
		cfg.Net = "freezetcp"
		d = mysql.Open(cfg.FormatDSN())
	case "postgres":
		cfg, err := pgx.ParseConfig(c.DSN)
		must(t, err)
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		cfg.DialFunc = f.dial
		d = postgres.New(postgres.Config{Conn: stdlib.OpenDB(*cfg)})
	default:
		dsn := "file:" + (&url.URL{Path: c.DSN}).EscapedPath() + "?" + eventbus.SQLiteDSNParams
		d = sqlite.Dialector{DriverName: "sqlite3_freeze", DSN: dsn}
	}
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)})
	must(t, err)
	if c.Dialect == "sqlite" {
		// SIGSTOP freezes every goroutine: one frozen inside a write of its
		// own (the child's Dispatch loop) would hold SQLite's one write
		// lock, which no sequencer can avoid. With one connection, the
		// freezer's statement is the only one running when it stops.
		sqlDB, err := db.DB()
		must(t, err)
		sqlDB.SetMaxOpenConns(1)
	}
	return db
}
