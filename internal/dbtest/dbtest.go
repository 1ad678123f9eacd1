// Package dbtest gives each test its own real database: a SQLite file in the
// test's temp dir, a MySQL/MariaDB database, or a PostgreSQL schema. The
// servers come from environment variables; without them the test skips and
// says how to enable it.
package dbtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dddbus/eventbus/sqlite"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Environment variables naming the servers.
const (
	MySQLEnv    = "EVENTBUS_MYSQL_DSN"    // e.g. root@tcp(127.0.0.1:3306)/
	PostgresEnv = "EVENTBUS_POSTGRES_DSN" // e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable
)

// Target is one kind of database the conformance suite runs on.
type Target struct {
	Name string
	// New creates an isolated, empty database for t and drops it when t ends.
	New func(t testing.TB) *Database
}

// Targets are every supported database.
var Targets = []Target{
	{Name: "sqlite", New: SQLite},
	{Name: "mysql", New: MySQL},
	{Name: "postgres", New: Postgres},
}

// SerializableTargets are the servers with SERIALIZABLE as the session
// default isolation level of every connection (SQLite has no levels).
var SerializableTargets = []Target{
	{Name: "mysql-serializable", New: MySQLSerializable},
	{Name: "postgres-serializable", New: PostgresSerializable},
}

// Database is an isolated database; Open returns a new connection pool to
// it each time, so several bus instances behave like separate processes.
type Database struct {
	Dialect string
	// Addr is the server's host:port ("" for SQLite).
	Addr string
	// Isolation, if set, is every connection's session default isolation
	// level ("serializable"); "" keeps the server's default.
	Isolation string
	dsn       func(addr string, session map[string]string) string // the DSN reaching the database through addr
}

// Open returns a new connection pool to the database, closed when t ends.
func (d *Database) Open(t testing.TB) *gorm.DB { return OpenDSN(t, d.Dialect, d.DSN()) }

// OpenSession returns a new pool whose every connection sets the given
// session variables (MySQL: system variables such as time_zone or
// timestamp, values quoted as SQL literals; PostgreSQL: run-time parameters
// such as TimeZone). SQLite has none: the test skips.
func (d *Database) OpenSession(t testing.TB, vars map[string]string) *gorm.DB {
	if d.Addr == "" {
		t.Skip("SQLite has no session variables")
	}
	return OpenDSN(t, d.Dialect, d.dsn(d.Addr, vars))
}

// OpenVia returns a new pool that reaches the server through addr (a proxy).
func (d *Database) OpenVia(t testing.TB, addr string) *gorm.DB {
	if d.Addr == "" {
		t.Skip("SQLite is embedded: there is no connection to proxy")
	}
	return OpenDSN(t, d.Dialect, d.dsn(addr, nil))
}

// DSN names the database for OpenDSN, for instance in another process.
func (d *Database) DSN() string { return d.dsn(d.Addr, nil) }

// OpenDSN returns a new connection pool to a database of dialect named by
// dsn (Database.DSN), closed when t ends.
func OpenDSN(t testing.TB, dialect, dsn string) *gorm.DB {
	var db *gorm.DB
	var err error
	switch dialect {
	case "sqlite":
		db, err = sqlite.Open(dsn)
	case "mysql":
		db, err = gorm.Open(mysql.Open(dsn), gormConfig())
	case "postgres":
		db, err = gorm.Open(postgres.Open(dsn), gormConfig())
	default:
		err = fmt.Errorf("unknown dialect %q", dialect)
	}
	if err != nil {
		t.Fatalf("open %s: %v", dialect, err)
	}
	closeOnCleanup(t, db)
	return db
}

// uniqueName returns a name that starts with the creation time, so stale
// databases of crashed runs can be recognised and dropped.
func uniqueName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("ebt_%d_%s", time.Now().Unix(), hex.EncodeToString(b[:]))
}

// staleBefore is the age past which leftover test databases are dropped.
const staleAfter = 2 * time.Hour

func isStale(name string) bool {
	var ts int64
	var rest string
	if _, err := fmt.Sscanf(name, "ebt_%d_%s", &ts, &rest); err != nil {
		return false
	}
	return time.Since(time.Unix(ts, 0)) > staleAfter
}

func gormConfig() *gorm.Config {
	return &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}
}

func envOrSkip(t testing.TB, name, example string) string {
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("skipping: set %s to run this test against a real server (e.g. %s=%q)", name, name, example)
	}
	return v
}

func closeOnCleanup(t testing.TB, db *gorm.DB) {
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
}
