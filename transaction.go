package eventbus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dddbus/eventbus/ddd"
)

// Transaction states.
const (
	txPending    = 0
	txCommitted  = 1
	txRolledBack = 2
	txUnresolved = 3 // the checker gave up (or none is registered); resolve by hand
)

type pendingTxKey struct{}

// TxID returns the id of the pending transaction carried by ctx.
func TxID(ctx context.Context) (int64, bool) {
	id, ok := ctx.Value(pendingTxKey{}).(int64)
	return id, ok
}

// DispatchBegin records events as a pending transaction of this service,
// invisible to consumers, and returns a context carrying it for Commit or
// Rollback. The record is durable when DispatchBegin returns, unless ctx
// carries a transaction: then it is written in that transaction and exists
// only if it commits. That transaction must be on the bus's database, as
// for Dispatch (ErrForeignTransaction, ErrInvalidTransaction otherwise).
// If neither Commit nor Rollback follows within TXCheckTimeout, the TX
// checker decides.
func (b *EventBus) DispatchBegin(ctx context.Context, events ...*ddd.DomainEvent) (context.Context, error) {
	if ctx == nil {
		return ctx, fmt.Errorf("%w: nil context", ErrInvalidArgument)
	}
	if len(events) == 0 {
		return ctx, fmt.Errorf("%w: DispatchBegin needs at least one event", ErrInvalidEvent)
	}
	evArgs, sizes, err := b.eventRows(events, "dispatch begin")
	if err != nil {
		return ctx, err
	}
	write := func(db execQuerier) (int64, error) {
		id, err := b.insertTxRow(ctx, db)
		if err != nil {
			return 0, fmt.Errorf("insert transaction: %w", err)
		}
		const per = 9
		args := make([]any, 0, len(events)*per)
		for i := range events {
			args = append(args, id, i)
			args = append(args, evArgs[i*7:(i+1)*7]...)
		}
		for start, end := 0, 0; start < len(events); start = end {
			end = b.chunkEnd(sizes, start)
			if _, err := db.ExecContext(ctx, b.q.insertTxEvents(end-start), args[start*per:end*per]...); err != nil {
				return 0, fmt.Errorf("insert transaction events: %w", err)
			}
		}
		return id, nil
	}
	// The same rules as Dispatch: a transaction in ctx is used if it is on
	// the bus's database, and refused otherwise.
	conn, inCaller, err := b.callerTx(ctx)
	if err != nil {
		return ctx, err
	}
	var id int64
	if inCaller {
		id, err = write(conn)
	} else {
		err = b.inTx(ctx, func(tx *sql.Tx) error {
			var werr error
			id, werr = write(tx)
			return werr
		})
	}
	if err != nil {
		return ctx, fmt.Errorf("dispatch begin: %w", err)
	}
	return context.WithValue(ctx, pendingTxKey{}, id), nil
}

type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (b *EventBus) insertTxRow(ctx context.Context, db execQuerier) (int64, error) {
	due := b.opts.TXCheckTimeout.Milliseconds()
	if b.d.returningID() != "" {
		var id int64
		err := db.QueryRowContext(ctx, b.q.insertTx, b.service, due).Scan(&id)
		return id, err
	}
	res, err := db.ExecContext(ctx, b.q.insertTx, b.service, due)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// Commit publishes the pending transaction carried by ctx: its events are
// appended to the log as new entries (so consumers already past older
// positions still receive them) and the transaction is marked committed,
// atomically. It always uses its own database transaction. Calling it again,
// or after the checker committed, is a no-op; after a rollback it returns
// ErrTxRolledBack.
func (b *EventBus) Commit(ctx context.Context) error {
	id, ok := TxID(ctx)
	if !ok {
		return ErrNoTransaction
	}
	return b.CommitTransaction(context.WithoutCancel(ctx), id)
}

// Rollback discards the pending transaction carried by ctx. Calling it
// again, or for a transaction that never became durable, is a no-op; after
// a commit it returns ErrTxCommitted.
func (b *EventBus) Rollback(ctx context.Context) error {
	id, ok := TxID(ctx)
	if !ok {
		return ErrNoTransaction
	}
	return b.RollbackTransaction(context.WithoutCancel(ctx), id)
}

// CommitTransaction commits transaction id by hand (for example one the
// checker left unresolved). See Commit. Only the service that began a
// transaction resolves it; another service's bus gets ErrTxOtherService.
func (b *EventBus) CommitTransaction(ctx context.Context, id int64) error {
	err := b.resolveTx(ctx, id, txCommitted)
	if err == nil {
		b.Notify()
	}
	return err
}

// RollbackTransaction rolls transaction id back by hand. See Rollback.
func (b *EventBus) RollbackTransaction(ctx context.Context, id int64) error {
	err := b.resolveTx(ctx, id, txRolledBack)
	if errors.Is(err, ErrTxNotFound) {
		return nil // never became durable: nothing to discard
	}
	return err
}

// resolveTx moves a pending or unresolved transaction to state, publishing
// its events on commit. The state change is the guard: only one resolution
// of a transaction can succeed.
func (b *EventBus) resolveTx(ctx context.Context, id int64, state int) error {
	return b.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, b.q.resolveTx, state, id, b.service)
		if err != nil {
			return fmt.Errorf("resolve transaction %d: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return b.alreadyResolved(ctx, tx, id, state)
		}
		if state == txCommitted {
			if _, err := tx.ExecContext(ctx, b.q.publishTx, id); err != nil {
				return fmt.Errorf("publish transaction %d: %w", id, err)
			}
		}
		if _, err := tx.ExecContext(ctx, b.q.deleteTxEvents, id); err != nil {
			return fmt.Errorf("resolve transaction %d: %w", id, err)
		}
		return nil
	})
}

func (b *EventBus) alreadyResolved(ctx context.Context, tx *sql.Tx, id int64, want int) error {
	var got int
	var owner string
	err := tx.QueryRowContext(ctx, b.q.txState, id).Scan(&got, &owner)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %d", ErrTxNotFound, id)
	case err != nil:
		return err
	case owner != b.service:
		return fmt.Errorf("%w: %d is %s's", ErrTxOtherService, id, owner)
	case got == want:
		return nil
	case got == txCommitted:
		return fmt.Errorf("%w: %d", ErrTxCommitted, id)
	default:
		return fmt.Errorf("%w: %d", ErrTxRolledBack, id)
	}
}
