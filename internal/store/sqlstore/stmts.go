package sqlstore

import (
	"context"
	"database/sql"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// stmtCache keeps the bus's hot statements (queries.hot) prepared on one
// pool, for every bus of that pool. database/sql prepares a pool statement
// on each connection the first time it runs there and reuses it after, so
// a connection holds at most maxPreparedPerPool of them, however many buses,
// services and event counts use the pool. Without it, go-sql-driver/mysql
// prepares, executes and closes every statement that has arguments, and
// SQLite compiles the statement at every call. PostgreSQL needs none: pgx
// keeps its own bounded cache of prepared statements per connection.
//
// Preparing never blocks a caller: a statement that is not prepared yet
// runs unprepared (on the caller's transaction if it has one), and is
// prepared on the pool by a goroutine of its own, which holds no
// connection or lock while it waits for one. A caller inside a transaction
// must never wait for a second connection of the pool: with
// SetMaxOpenConns(1) it would wait forever.
type stmtCache struct {
	db  *sql.DB
	set *stmtSet
}

// maxPreparedPerPool caps the statements kept prepared per pool, so per
// connection: the hot statements of one table prefix (see queries.hot); the
// statements of a second prefix on the same pool beyond it run unprepared.
const maxPreparedPerPool = 20

const (
	prepareTimeout = 30 * time.Second // for a free connection, and the prepare itself
	prepareBackoff = time.Minute      // before trying again after a failed prepare
)

// stmtSet is the state of a stmtCache that its cleanup needs: the cleanup
// closes the statements once no bus uses the cache any more.
type stmtSet struct {
	mu     sync.Mutex
	m      map[string]*stmtEntry
	closed bool
}

type stmtEntry struct {
	st        atomic.Pointer[sql.Stmt]
	preparing atomic.Bool
	notBefore atomic.Int64 // UnixNano before which no prepare is tried (after a failure)
}

// stmtCaches finds the cache of a pool. Both sides are weak: the map keeps
// neither a closed pool nor an unused cache alive. Buses hold their cache.
var stmtCaches = struct {
	sync.Mutex
	m map[weak.Pointer[sql.DB]]weak.Pointer[stmtCache]
}{m: map[weak.Pointer[sql.DB]]weak.Pointer[stmtCache]{}}

// stmtCacheFor returns the statement cache shared by the buses of db.
func stmtCacheFor(db *sql.DB) *stmtCache {
	key := weak.Make(db)
	stmtCaches.Lock()
	defer stmtCaches.Unlock()
	if c := stmtCaches.m[key].Value(); c != nil {
		return c
	}
	for k, v := range stmtCaches.m {
		if k.Value() == nil || v.Value() == nil {
			delete(stmtCaches.m, k)
		}
	}
	c := &stmtCache{db: db, set: &stmtSet{m: map[string]*stmtEntry{}}}
	// Closing may wait for connections in use: not on the cleanup goroutine.
	runtime.AddCleanup(c, func(s *stmtSet) { go s.close() }, c.set)
	stmtCaches.m[key] = weak.Make(c)
	return c
}

// get returns query prepared on the pool, or nil: it is not prepared yet
// (a background prepare starts), its last prepare failed, or the cache is
// full. Nothing here waits for the database.
func (c *stmtCache) get(query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	e := c.set.entry(query)
	if e == nil {
		return nil
	}
	if st := e.st.Load(); st != nil {
		return st
	}
	if time.Now().UnixNano() >= e.notBefore.Load() && e.preparing.CompareAndSwap(false, true) {
		go c.set.prepare(c.db, query, e)
	}
	return nil
}

// entry returns query's entry, adding it if there is room.
func (s *stmtSet) entry(query string) *stmtEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[query]
	if e == nil && !s.closed && len(s.m) < maxPreparedPerPool {
		e = &stmtEntry{}
		s.m[query] = e
	}
	return e
}

// prepare prepares query on the pool for e, without holding s.mu.
func (s *stmtSet) prepare(db *sql.DB, query string, e *stmtEntry) {
	defer e.preparing.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	defer cancel()
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		// A closed pool, the server's statement limit, a lost connection:
		// the statement runs unprepared meanwhile.
		e.notBefore.Store(time.Now().Add(prepareBackoff).UnixNano())
		return
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		e.st.Store(st)
	}
	s.mu.Unlock()
	if closed {
		_ = st.Close()
	}
}

// close closes every statement; the set keeps nothing prepared after it.
func (s *stmtSet) close() {
	s.mu.Lock()
	s.closed = true
	var sts []*sql.Stmt
	for _, e := range s.m {
		if st := e.st.Swap(nil); st != nil {
			sts = append(sts, st)
		}
	}
	s.mu.Unlock()
	for _, st := range sts {
		_ = st.Close()
	}
}
