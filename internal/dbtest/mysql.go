package dbtest

import (
	"database/sql"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"testing"

	mysqldrv "github.com/go-sql-driver/mysql"
)

var mysqlSweep sync.Once

// The driver logs every broken connection to stderr; the failure tests
// break many on purpose. EVENTBUS_TEST_LOG keeps them.
func init() {
	if os.Getenv("EVENTBUS_TEST_LOG") == "" {
		_ = mysqldrv.SetLogger(log.New(io.Discard, "", 0))
	}
}

// MySQL creates a database of its own on the server named by
// EVENTBUS_MYSQL_DSN and drops it when t ends.
func MySQL(t testing.TB) *Database {
	dsn := envOrSkip(t, MySQLEnv, "root@tcp(127.0.0.1:3306)/")
	return mysqlOn(t, dsn, true)
}

// MySQLSerializable is MySQL with SERIALIZABLE as every connection's
// session default isolation level, to check that the bus states the level
// of every transaction it runs instead of inheriting the server's default.
func MySQLSerializable(t testing.TB) *Database {
	d := MySQL(t)
	d.Isolation = "serializable"
	return d
}

// mysqlOn creates a database of its own on the server of dsn; sweep drops
// the leftovers of crashed runs first (once per process).
func mysqlOn(t testing.TB, dsn string, sweep bool) *Database {
	cfg, err := mysqldrv.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("mysql DSN %q: %v", dsn, err)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("mysql: %v", err)
	}
	defer admin.Close()
	if sweep {
		mysqlSweep.Do(func() { sweepMySQL(t, admin) })
	}
	name := uniqueName()
	if _, err := admin.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		t.Fatalf("mysql: create database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("mysql", cfg.FormatDSN())
		if err == nil {
			_, _ = admin.Exec("DROP DATABASE IF EXISTS " + name)
			admin.Close()
		}
	})
	d := &Database{Dialect: "mysql", Addr: cfg.Addr}
	isoVar := isolationVar(t, cfg)
	d.dsn = func(addr string, session map[string]string) string {
		c := cfg.Clone()
		c.DBName, c.Addr = name, addr
		c.Params = map[string]string{}
		if d.Isolation != "" {
			c.Params[isoVar] = "'" + strings.ToUpper(d.Isolation) + "'"
		}
		for k, v := range session {
			c.Params[k] = v
		}
		return c.FormatDSN()
	}
	return d
}

// isolationVar is the session variable of the default isolation level:
// transaction_isolation on MySQL 8 and MariaDB 11.1+, tx_isolation on
// older MariaDB.
func isolationVar(t testing.TB, cfg *mysqldrv.Config) string {
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("mysql: %v", err)
	}
	defer admin.Close()
	var v string
	if admin.QueryRow("SELECT @@transaction_isolation").Scan(&v) == nil {
		return "transaction_isolation"
	}
	return "tx_isolation"
}

// sweepMySQL drops test databases left by runs that crashed long ago.
func sweepMySQL(t testing.TB, admin *sql.DB) {
	rows, err := admin.Query("SHOW DATABASES LIKE 'ebt\\_%'")
	if err != nil {
		t.Logf("mysql: list stale databases: %v", err)
		return
	}
	var stale []string
	for rows.Next() {
		var n string
		if rows.Scan(&n) == nil && isStale(n) {
			stale = append(stale, n)
		}
	}
	rows.Close()
	for _, n := range stale {
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + n)
	}
}
