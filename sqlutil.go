package eventbus

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// inTx runs fn in one of the bus's own transactions (READ COMMITTED where
// the database has levels). fn's first statement must be a write, so that
// SQLite takes the write lock at once whatever the DSN's _txlock is.
func (b *EventBus) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return b.inTxWith(ctx, b.d.txOptions(), fn)
}

func (b *EventBus) inTxWith(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	tx, err := b.sqlDB.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// bounded limits one database operation of the poll loop to LeaseDuration
// (at least 5s): a connection that hangs without a reset (a network
// partition) then fails, and the loop backs off and retries, instead of
// waiting for the operating system to give up on it.
func (b *EventBus) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(b.opts.LeaseDuration, 5*time.Second))
}

func queryInt64s(ctx context.Context, db querier, query string, args ...any) ([]int64, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func queryStrings(ctx context.Context, db querier, query string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
