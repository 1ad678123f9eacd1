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
func (b *EventBus) Dispatch(ctx context.Context, events ...*ddd.DomainEvent) error {
	if len(events) == 0 {
		return nil
	}
	args := make([]any, 0, len(events)*7)
	for i, evt := range events {
		if err := b.validateEvent(evt); err != nil {
			return fmt.Errorf("dispatch event %d: %w", i, err)
		}
		var err error
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
	err := b.inTx(ctx, func(tx *sql.Tx) error { return b.insertEvents(ctx, tx, args, len(events)) })
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	b.Notify()
	return nil
}

// insertEvents writes n events in tx, the bus's own transaction or the
// connection of the caller's.
func (b *EventBus) insertEvents(ctx context.Context, tx txConn, args []any, n int) error {
	for start := 0; start < n; start += insertChunk {
		end := min(start+insertChunk, n)
		if _, err := b.exec(ctx, tx, b.q.insertEvents(end-start), args[start*7:end*7]...); err != nil {
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
