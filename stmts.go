package eventbus

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps the bus's frequent statements prepared. database/sql
// prepares a statement on a connection the first time it runs there and
// reuses it after. Without it, go-sql-driver/mysql prepares, executes and
// closes every statement that has arguments (three round trips), and
// SQLite compiles the statement at every call; pgx caches by itself, so on
// PostgreSQL this changes little.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}}
}

// get returns query prepared, or nil if it cannot be prepared now (the
// caller then runs it unprepared, and a later call tries again).
func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.m[query] = st
	return st
}

func (b *EventBus) queryPrepared(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := b.stmts.get(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return b.sqlDB.QueryContext(ctx, query, args...)
}

func (b *EventBus) queryRowPrepared(ctx context.Context, query string, args ...any) *sql.Row {
	if st := b.stmts.get(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return b.sqlDB.QueryRowContext(ctx, query, args...)
}

func (b *EventBus) execPrepared(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := b.stmts.get(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return b.sqlDB.ExecContext(ctx, query, args...)
}

// execOnPrepared runs query on db, prepared if db is the bus's pool or a
// transaction of it (a caller's transaction may come from another pool).
func (b *EventBus) execOnPrepared(ctx context.Context, db execer, query string, args ...any) (sql.Result, error) {
	switch d := db.(type) {
	case *sql.DB:
		if d == b.sqlDB {
			return b.execPrepared(ctx, query, args...)
		}
	case *sql.Tx:
		if poolOf(d) != b.sqlDB {
			break
		}
		if st := b.stmts.get(ctx, query); st != nil {
			return d.StmtContext(ctx, st).ExecContext(ctx, args...)
		}
	}
	return db.ExecContext(ctx, query, args...)
}
