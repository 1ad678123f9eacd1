package eventbus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dddbus/eventbus/ddd"
	"gorm.io/gorm"
)

// insertChunk bounds the rows of one INSERT (7 parameters each) well under
// every driver's placeholder limit.
const insertChunk = 500

// Dispatch stores events in the log.
//
// If ctx carries a GORM transaction (ddd.ContextWithTx, as the engine does)
// the events are written with it: they become visible when it commits and
// vanish if it rolls back. That transaction must be on the bus's database;
// otherwise Dispatch returns ErrForeignTransaction. Without one, Dispatch
// uses its own short transaction and wakes the local poller.
//
// Every event is validated first; if any is invalid (nil, malformed, or a
// payload over MaxPayloadBytes) Dispatch returns an error wrapping
// ErrInvalidEvent and writes nothing.
func (b *EventBus) Dispatch(ctx context.Context, events ...*ddd.DomainEvent) (err error) {
	if len(events) == 0 {
		return nil
	}
	ctx, observed := b.observeDispatch(ctx, events, false)
	defer func() { observed(err) }()
	args := make([]any, 0, len(events)*7)
	for i, evt := range events {
		if err := b.validateEvent(evt); err != nil {
			return fmt.Errorf("dispatch event %d: %w", i, err)
		}
		if args, err = eventArgs(evt, args); err != nil {
			return err
		}
	}
	if tx, ok := ddd.TxFromContext(ctx); ok {
		pool, err := b.txPool(tx)
		if err != nil {
			return err
		}
		return b.insertEvents(ctx, pool, args, len(events))
	}
	err = b.inTx(ctx, func(tx *sql.Tx) error { return b.insertEvents(ctx, tx, args, len(events)) })
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	b.Notify()
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (b *EventBus) insertEvents(ctx context.Context, db execer, args []any, n int) error {
	for start := 0; start < n; start += insertChunk {
		end := min(start+insertChunk, n)
		var err error
		if end-start <= smallInsert {
			// The common sizes stay prepared on each connection.
			_, err = b.execOnPrepared(ctx, db, b.q.insertEvents(end-start), args[start*7:end*7]...)
		} else {
			_, err = db.ExecContext(ctx, b.q.insertEvents(end-start), args[start*7:end*7]...)
		}
		if err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
	}
	return nil
}

// txPool returns the connection of tx after checking that it is an open
// transaction on the bus's own database.
func (b *EventBus) txPool(tx *gorm.DB) (gorm.ConnPool, error) {
	if _, ok := tx.Statement.ConnPool.(gorm.TxCommitter); !ok {
		return nil, fmt.Errorf("%w: the context carries a *gorm.DB that is not in a transaction", ErrInvalidOption)
	}
	parent, err := tx.DB()
	if err != nil || parent != b.sqlDB {
		return nil, ErrForeignTransaction
	}
	return tx.Statement.ConnPool, nil
}

func (b *EventBus) validateEvent(evt *ddd.DomainEvent) error {
	if err := evt.Validate(); err != nil {
		return errors.Join(ErrInvalidEvent, err)
	}
	if len(evt.Payload) > b.opts.MaxPayloadBytes {
		return fmt.Errorf("%w: payload of %s %s is %d bytes, over MaxPayloadBytes %d",
			ErrInvalidEvent, evt.Type, evt.ID, len(evt.Payload), b.opts.MaxPayloadBytes)
	}
	return nil
}
