package dbtest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// SQLite returns a fresh SQLite file in a temp dir of its own, removed when
// t ends.
//
// Not t.TempDir: a connection that was in use when its pool was closed (a
// statement the bus prepares in the background, say) is closed when it is
// released, and SQLite then removes its -wal and -shm files, racing
// TempDir's single RemoveAll ("directory not empty"). The removal here
// retries for a few seconds instead.
func SQLite(t testing.TB) *Database {
	dir, err := os.MkdirTemp("", "eventbus-sqlite-")
	if err != nil {
		t.Fatalf("sqlite: %v", err)
	}
	t.Cleanup(func() { removeAllSoon(t, dir) })
	path := filepath.Join(dir, "events.db")
	return &Database{
		Dialect: "sqlite",
		dsn:     func(string, map[string]string) string { return path },
	}
}

func removeAllSoon(t testing.TB, dir string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := os.RemoveAll(dir)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("sqlite: removing %s: %v", dir, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
