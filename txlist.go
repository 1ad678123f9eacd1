package eventbus

import (
	"context"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

// TxState is the state of a transactional message.
type TxState int8

const (
	TxPending    TxState = TxState(txPending)    // waiting for Commit, Rollback or the TX checker
	TxCommitted  TxState = TxState(txCommitted)  // its events were published
	TxRolledBack TxState = TxState(txRolledBack) // its events were discarded
	TxUnresolved TxState = TxState(txUnresolved) // the checker gave up: resolve it by hand
)

func (s TxState) String() string {
	switch s {
	case TxPending:
		return "pending"
	case TxCommitted:
		return "committed"
	case TxRolledBack:
		return "rolled_back"
	case TxUnresolved:
		return "unresolved"
	}
	return fmt.Sprintf("TxState(%d)", int8(s))
}

// TransactionInfo describes one transactional message.
type TransactionInfo struct {
	ID        int64
	Service   string // the service that began it, and alone resolves it
	State     TxState
	Checks    int    // TX checks so far
	LastError string // why the last check resolved nothing
	// DueAt: when a pending transaction is (next) handed to the TX checker.
	DueAt     time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
	// Events are its events while it is pending or unresolved; once it is
	// resolved they are in the log (committed) or gone (rolled back).
	Events []*ddd.DomainEvent
}

// Transactions lists this service's transactions that wait for a
// resolution, pending and unresolved, with id > after, in id order, at
// most limit (1..1000), with their events. With only set, it lists those
// states alone (TxPending, TxUnresolved).
func (b *EventBus) Transactions(ctx context.Context, after int64, limit int, only ...TxState) ([]TransactionInfo, error) {
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit must be 1..1000, got %d", ErrInvalidArgument, limit)
	}
	states := []store.TxState{txPending, txUnresolved}
	if len(only) > 0 {
		states = states[:0]
		for _, s := range only {
			if s != TxPending && s != TxUnresolved {
				return nil, fmt.Errorf("%w: Transactions lists pending or unresolved ones, not %s", ErrInvalidArgument, s)
			}
			states = append(states, store.TxState(s))
		}
	}
	rows, err := b.st.ListTxs(ctx, store.TxListParams{Service: b.service, States: states, After: after, Limit: limit})
	out := txInfos(rows)
	if err != nil {
		return nil, fmt.Errorf("transactions: %w", err)
	}
	for i := range out {
		if out[i].Events, err = b.txEvents(ctx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Transaction returns transaction id, whichever service began it, with its
// events if it is pending or unresolved. An id that is not stored gives an
// error wrapping ErrTxCleaned (resolved and removed by the cleaner) or
// ErrTxNotFound.
func (b *EventBus) Transaction(ctx context.Context, id int64) (TransactionInfo, error) {
	row, found, err := b.st.Tx(ctx, id)
	if err != nil {
		return TransactionInfo{}, fmt.Errorf("transaction %d: %w", id, err)
	}
	if !found {
		mark, err := b.st.TxWatermark(ctx)
		if err != nil {
			return TransactionInfo{}, fmt.Errorf("transaction %d: read the cleaner's mark: %w", id, err)
		}
		return TransactionInfo{}, txNotStored(id, mark)
	}
	t := txInfos([]store.TxRow{row})[0]
	if t.State == TxPending || t.State == TxUnresolved {
		if t.Events, err = b.txEvents(ctx, id); err != nil {
			return TransactionInfo{}, err
		}
	}
	return t, nil
}

// txInfos converts what the store read.
func txInfos(rows []store.TxRow) []TransactionInfo {
	out := make([]TransactionInfo, len(rows))
	for i, r := range rows {
		out[i] = TransactionInfo{ID: r.ID, Service: r.Service, State: TxState(r.State), Checks: r.Checks, LastError: r.LastError,
			DueAt: time.UnixMilli(r.DueAt).UTC(), CreatedAt: time.UnixMilli(r.CreatedAt).UTC(), UpdatedAt: time.UnixMilli(r.UpdatedAt).UTC()}
	}
	return out
}

// TxCounts counts one service's transactions that wait for a resolution.
type TxCounts struct {
	Service    string
	Pending    int64
	Unresolved int64
}

// TransactionCounts counts the pending and unresolved transactions of every
// service that has any, by service name. It walks the distinct services of
// the transactions table through its index (one lookup per service, never
// a scan of the resolved transactions kept for RetentionTime).
func (b *EventBus) TransactionCounts(ctx context.Context) ([]TxCounts, error) {
	var out []TxCounts
	after := ""
	for {
		svc, ok, err := b.st.NextTxService(ctx, after)
		if err != nil {
			return nil, fmt.Errorf("transaction counts: %w", err)
		}
		if !ok {
			return out, nil
		}
		after = svc
		c := TxCounts{Service: svc}
		if c.Pending, c.Unresolved, err = b.st.TxCounts(ctx, svc); err != nil {
			return nil, fmt.Errorf("transaction counts: %w", err)
		}
		if c.Pending > 0 || c.Unresolved > 0 {
			out = append(out, c)
		}
	}
}
