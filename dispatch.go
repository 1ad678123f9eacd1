package eventbus

import (
	"context"
	"fmt"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

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
// one, Dispatch uses its own short transaction and calls Notify. On
// PostgreSQL a caller's transaction also carries the wake-up notification
// of other processes (coalesced; see wakeup.go).
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
	rows, err := b.eventRows(events, "dispatch")
	if err != nil {
		return err
	}
	conn, inCaller, err := b.st.CallerTx(ctx)
	if err != nil {
		return err
	}
	if inCaller {
		if err := b.st.InsertEvents(ctx, conn, rows); err != nil {
			return err
		}
		return b.announceIn(ctx, conn)
	}
	if err := b.st.InsertEvents(ctx, nil, rows); err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	b.committed()
	return nil
}

// eventRows validates events and returns them as the store writes them.
func (b *EventBus) eventRows(events []*ddd.DomainEvent, op string) ([]store.EncodedEvent, error) {
	rows := make([]store.EncodedEvent, len(events))
	for i, evt := range events {
		if err := b.validateEvent(evt); err != nil {
			return nil, fmt.Errorf("%s event %d: %w", op, i, err)
		}
		var err error
		if rows[i], err = b.st.EncodeEvent(evt); err != nil {
			return nil, fmt.Errorf("%s event %d: %w", op, i, err)
		}
	}
	return rows, nil
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
