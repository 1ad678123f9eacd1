package dbtest

import (
	"database/sql"
	"net/url"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

var pgSweep sync.Once

// Postgres creates a schema of its own in the database named by
// EVENTBUS_POSTGRES_DSN (a postgres:// URL), sets it as the search_path of
// every connection, and drops it when t ends.
func Postgres(t testing.TB) *Database {
	dsn := envOrSkip(t, PostgresEnv, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	return postgresOn(t, dsn, true)
}

// PostgresSerializable is Postgres with default_transaction_isolation set
// to serializable on every connection (see MySQLSerializable).
func PostgresSerializable(t testing.TB) *Database {
	d := Postgres(t)
	d.Isolation = "serializable"
	return d
}

// postgresOn creates a schema of its own on the server of dsn; sweep drops
// the leftovers of crashed runs first (once per process).
func postgresOn(t testing.TB, dsn string, sweep bool) *Database {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Fatalf("%s must be a postgres:// URL: %v", PostgresEnv, err)
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer admin.Close()
	if sweep {
		pgSweep.Do(func() { sweepPostgres(t, admin) })
	}
	name := uniqueName()
	if _, err := admin.Exec("CREATE SCHEMA " + name); err != nil {
		t.Fatalf("postgres: create schema: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", dsn)
		if err == nil {
			_, _ = admin.Exec("DROP SCHEMA IF EXISTS " + name + " CASCADE")
			admin.Close()
		}
	})
	d := &Database{Dialect: "postgres", Addr: u.Host}
	d.dsn = func(addr string, session map[string]string) string {
		c := *u
		c.Host = addr
		q := c.Query()
		q.Set("search_path", name)
		if d.Isolation != "" {
			q.Set("default_transaction_isolation", d.Isolation)
		}
		for k, v := range session {
			q.Set(k, v)
		}
		c.RawQuery = q.Encode()
		return c.String()
	}
	return d
}

// sweepPostgres drops test schemas left by runs that crashed long ago.
func sweepPostgres(t testing.TB, admin *sql.DB) {
	rows, err := admin.Query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ebt\\_%'")
	if err != nil {
		t.Logf("postgres: list stale schemas: %v", err)
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
		_, _ = admin.Exec("DROP SCHEMA IF EXISTS " + n + " CASCADE")
	}
}
