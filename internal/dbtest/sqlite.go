package dbtest

import (
	"path/filepath"
	"testing"
)

// SQLite returns a fresh SQLite file in t's temp dir.
func SQLite(t testing.TB) *Database {
	path := filepath.Join(t.TempDir(), "events.db")
	return &Database{
		Dialect: "sqlite",
		dsn:     func(string, map[string]string) string { return path },
	}
}
