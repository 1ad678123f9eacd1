package sqlite_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/sqlite"
)

func TestOpenRejectsEmptyPath(t *testing.T) {
	if _, err := sqlite.Open(""); !errors.Is(err, eventbus.ErrInvalidDB) {
		t.Fatalf("err %v, want ErrInvalidDB", err)
	}
}

// Open sets what DSNParams promise, on every connection of the pool, and
// the bus accepts the database.
func TestOpenSetsPragmas(t *testing.T) {
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "a b#?.db")) // characters a DSN must escape
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	sqlDB.SetMaxIdleConns(3)
	conns := make([]interface{ Close() error }, 0, 3)
	for range 3 { // distinct connections: each one applies the DSN's pragmas
		c, err := sqlDB.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var mode string
		var timeout, sync, fk int
		for q, dst := range map[string]any{
			"PRAGMA journal_mode": &mode, "PRAGMA busy_timeout": &timeout,
			"PRAGMA synchronous": &sync, "PRAGMA foreign_keys": &fk,
		} {
			if err := c.QueryRowContext(t.Context(), q).Scan(dst); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if mode != "wal" || timeout != 10000 || sync != 1 || fk != 1 {
			t.Fatalf("journal_mode %q busy_timeout %d synchronous %d foreign_keys %d; want wal 10000 1 (NORMAL) 1", mode, timeout, sync, fk)
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}
	if _, err := eventbus.NewEventBus("svc", db); err != nil {
		t.Fatalf("NewEventBus refused a database from Open: %v", err)
	}
}
