package sqlstore

import (
	"database/sql"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// The statement cache is one per pool, shared by its buses, bounded, and
// keeps neither the pool nor its statements once no bus uses it.
func TestStmtCacheSharedBoundedAndReleased(t *testing.T) {
	sqlDB, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "stmts.db")+"?"+SQLiteDSNParams)
	if err != nil {
		t.Fatal(err)
	}
	c := stmtCacheFor(sqlDB)
	if stmtCacheFor(sqlDB) != c {
		t.Fatal("two lookups of one pool returned two caches")
	}

	// The first get starts the prepare in the background and returns nil.
	const query = "SELECT 1"
	if c.get(query) != nil {
		t.Fatal("get returned a statement before any prepare ran")
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.get(query) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the statement was not prepared within 10s")
		}
		time.Sleep(time.Millisecond)
	}

	// Full: further statements run unprepared, with no entry.
	for i := 1; i < maxPreparedPerPool; i++ {
		c.get("SELECT " + string(rune('a'+i)))
	}
	if c.set.entry("SELECT 'one too many'") != nil {
		t.Errorf("the cache took more than %d statements", maxPreparedPerPool)
	}

	// Unused, the cache is collected and closes its statements (which
	// hold the pool); the registry keeps neither alive.
	set := c.set
	poolFreed := make(chan struct{})
	runtime.AddCleanup(sqlDB, func(ch chan struct{}) { close(ch) }, poolFreed)
	if err := sqlDB.Close(); err != nil {
		t.Fatal(err)
	}
	c, sqlDB = nil, nil
	deadline = time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		set.mu.Lock()
		closed := set.closed
		set.mu.Unlock()
		freed := false
		select {
		case <-poolFreed:
			freed = true
		default:
		}
		if closed && freed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: statements closed %t, pool collected %t", closed, freed)
		}
		time.Sleep(time.Millisecond)
	}
	for q, e := range set.m {
		if e.st.Load() != nil {
			t.Errorf("statement %q still held after the cache was released", q)
		}
	}
}
