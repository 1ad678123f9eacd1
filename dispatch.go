package eventbus

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/dddbus/eventbus/ddd"
)

// insertChunk bounds the rows of one INSERT (7 parameters each) well under
// every driver's placeholder limit. On MySQL the server's packet limit
// may cut statements shorter (see chunkEnd).
const insertChunk = 500

// Dispatch stores events in the log.
//
// If ctx carries a transaction (ddd.ContextWithTx for GORM,
// ddd.ContextWithSQLTx for database/sql, as the engine does) the events are
// written with it: they become visible when it commits and vanish if it
// rolls back. It may come from any connection pool, but must be on the
// bus's database (same server, database and schema, where the bus's tables
// are); otherwise Dispatch returns ErrForeignTransaction and writes
// nothing. A nil or zero one, or a *gorm.DB outside a transaction, is
// ErrInvalidTransaction (a finished one fails with sql.ErrTxDone). Without
// one, Dispatch uses its own short transaction and wakes the local poller.
//
// Every event is validated first, before any SQL (see ddd.DomainEvent.Validate);
// if any is invalid (nil, malformed, a payload over MaxPayloadBytes, or on
// MySQL a row that cannot fit in the server's max_allowed_packet)
// Dispatch returns an error wrapping ErrInvalidEvent and writes nothing.
func (b *EventBus) Dispatch(ctx context.Context, events ...*ddd.DomainEvent) (err error) {
	if ctx == nil {
		return fmt.Errorf("%w: nil context", ErrInvalidArgument)
	}
	if len(events) == 0 {
		return nil
	}
	ctx, observed := b.observeDispatch(ctx, events, false)
	defer func() { observed(err) }()
	args, sizes, err := b.eventRows(events, "dispatch")
	if err != nil {
		return err
	}
	conn, inCaller, err := b.callerTx(ctx)
	if err != nil {
		return err
	}
	if inCaller {
		return b.insertEvents(ctx, conn, args, sizes)
	}
	err = b.inTx(ctx, func(tx *sql.Tx) error { return b.insertEvents(ctx, tx, args, sizes) })
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	b.Notify()
	return nil
}

// eventRows validates events and returns their column values (eventCols,
// 7 per event) and the bytes of each row's values.
func (b *EventBus) eventRows(events []*ddd.DomainEvent, op string) (args []any, sizes []int, err error) {
	args = make([]any, 0, len(events)*7)
	sizes = make([]int, len(events))
	for i, evt := range events {
		if err := b.validateEvent(evt); err != nil {
			return nil, nil, fmt.Errorf("%s event %d: %w", op, i, err)
		}
		if args, err = eventArgs(evt, args); err != nil {
			return nil, nil, err
		}
		sizes[i] = valueBytes(args[i*7 : i*7+7])
		if b.packetBudget > 0 && sizes[i]+rowOverhead > b.packetBudget {
			return nil, nil, fmt.Errorf("%s event %d: %w: %s is %d bytes with its metadata, more than the server's max_allowed_packet of %d bytes allows",
				op, i, ErrInvalidEvent, evt.ID, sizes[i], b.packetBytes)
		}
	}
	return args, sizes, nil
}

// insertEvents writes the events of args (sizes: each row's bytes) on tx,
// the bus's own transaction or the connection of the caller's, in as few
// statements as the placeholder and packet limits allow.
func (b *EventBus) insertEvents(ctx context.Context, tx txConn, args []any, sizes []int) error {
	for start, end := 0, 0; start < len(sizes); start = end {
		end = b.chunkEnd(sizes, start)
		if _, err := b.exec(ctx, tx, b.q.insertEvents(end-start), args[start*7:end*7]...); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
	}
	return nil
}

func (b *EventBus) validateEvent(evt *ddd.DomainEvent) error {
	if err := evt.Validate(); err != nil {
		return err // wraps ErrInvalidEvent, which is ddd.ErrInvalidEvent
	}
	if len(evt.Payload) > b.opts.MaxPayloadBytes {
		return fmt.Errorf("%w: payload of %s %s is %d bytes, over MaxPayloadBytes %d",
			ErrInvalidEvent, evt.Type, evt.ID, len(evt.Payload), b.opts.MaxPayloadBytes)
	}
	return nil
}
