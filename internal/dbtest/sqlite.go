package dbtest

import (
	"path/filepath"
	"testing"

	"github.com/dddbus/eventbus"
	"gorm.io/gorm"
)

// SQLite returns a fresh SQLite file in t's temp dir.
func SQLite(t testing.TB) *Database {
	path := filepath.Join(t.TempDir(), "events.db")
	return &Database{
		Dialect: "sqlite",
		open: func(t testing.TB, _ string, _ map[string]string) *gorm.DB {
			db, err := eventbus.OpenSQLite(path)
			if err != nil {
				t.Fatalf("open sqlite: %v", err)
			}
			closeOnCleanup(t, db)
			return db
		},
	}
}
