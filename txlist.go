package eventbus

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// TxState is the state of a transactional message.
type TxState int8

const (
	TxPending    TxState = txPending    // waiting for Commit, Rollback or the TX checker
	TxCommitted  TxState = txCommitted  // its events were published
	TxRolledBack TxState = txRolledBack // its events were discarded
	TxUnresolved TxState = txUnresolved // the checker gave up: resolve it by hand
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

const txInfoCols = "id, service, state, check_count, last_error, due_at, created_at, updated_at"

// Transactions lists this service's transactions that wait for a
// resolution, pending and unresolved, with id > after, in id order, at
// most limit (1..1000), with their events. With only set, it lists those
// states alone (TxPending, TxUnresolved).
func (b *EventBus) Transactions(ctx context.Context, after int64, limit int, only ...TxState) ([]TransactionInfo, error) {
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit must be 1..1000, got %d", ErrInvalidArgument, limit)
	}
	states := []any{txPending, txUnresolved}
	if len(only) > 0 {
		states = states[:0]
		for _, s := range only {
			if s != TxPending && s != TxUnresolved {
				return nil, fmt.Errorf("%w: Transactions lists pending or unresolved ones, not %s", ErrInvalidArgument, s)
			}
			states = append(states, int(s))
		}
	}
	out, err := b.txInfos(ctx, b.transactionsQuery(len(states)), append(append([]any{b.service}, states...), after, limit))
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

// transactionsQuery lists a service's transactions in n states, through
// transactions_due (service, state, due_at).
// MySQL and SQLite are told to: their planners walk the primary key in id
// order instead, through every resolved transaction kept for RetentionTime.
func (b *EventBus) transactionsQuery(n int) string {
	from := b.q.txs
	switch b.d.name() {
	case "mysql":
		from += " FORCE INDEX (" + b.opts.TablePrefix + "transactions_due)"
	case "sqlite":
		from += " INDEXED BY " + b.opts.TablePrefix + "transactions_due"
	}
	return b.d.rebind("SELECT " + txInfoCols + " FROM " + from + " WHERE service = ? AND state IN " + in(n) + " AND id > ? ORDER BY id LIMIT ?")
}

// Transaction returns transaction id, whichever service began it, with its
// events if it is pending or unresolved. An id that is not stored gives an
// error wrapping ErrTxCleaned (resolved and removed by the cleaner) or
// ErrTxNotFound.
func (b *EventBus) Transaction(ctx context.Context, id int64) (TransactionInfo, error) {
	out, err := b.txInfos(ctx, b.d.rebind("SELECT "+txInfoCols+" FROM "+b.q.txs+" WHERE id = ?"), []any{id})
	if err != nil {
		return TransactionInfo{}, fmt.Errorf("transaction %d: %w", id, err)
	}
	if len(out) == 0 {
		return TransactionInfo{}, b.txNotStored(ctx, nil, id)
	}
	t := out[0]
	if t.State == TxPending || t.State == TxUnresolved {
		if t.Events, err = b.txEvents(ctx, id); err != nil {
			return TransactionInfo{}, err
		}
	}
	return t, nil
}

// txInfos runs a query of txInfoCols.
func (b *EventBus) txInfos(ctx context.Context, query string, args []any) ([]TransactionInfo, error) {
	var out []TransactionInfo
	err := b.query(ctx, nil, query, args, func(rows *sql.Rows) error {
		var t TransactionInfo
		var state int
		var due, created, updated int64
		if err := rows.Scan(&t.ID, &t.Service, &state, &t.Checks, &t.LastError, &due, &created, &updated); err != nil {
			return err
		}
		t.State = TxState(state)
		t.DueAt, t.CreatedAt, t.UpdatedAt = time.UnixMilli(due).UTC(), time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, t)
		return nil
	})
	return out, err
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
	next, counts := b.txCountQueries()
	var out []TxCounts
	after := ""
	for {
		var svc sql.NullString
		if err := b.queryRow(ctx, nil, next, []any{after}, &svc); err != nil {
			return nil, fmt.Errorf("transaction counts: %w", err)
		}
		if !svc.Valid {
			return out, nil
		}
		after = svc.String
		c := TxCounts{Service: svc.String}
		if err := b.queryRow(ctx, nil, counts, []any{svc.String, svc.String}, &c.Pending, &c.Unresolved); err != nil {
			return nil, fmt.Errorf("transaction counts: %w", err)
		}
		if c.Pending > 0 || c.Unresolved > 0 {
			out = append(out, c)
		}
	}
}

// txCountQueries are TransactionCounts' statements: the next service name
// (a loose index scan of transactions_due) and one service's counts.
func (b *EventBus) txCountQueries() (next, counts string) {
	next = b.d.rebind("SELECT MIN(service) FROM " + b.q.txs + " WHERE service > ?")
	counts = b.d.rebind("SELECT (SELECT COUNT(*) FROM " + b.q.txs + " WHERE service = ? AND state = 0)," +
		" (SELECT COUNT(*) FROM " + b.q.txs + " WHERE service = ? AND state = 3)")
	return next, counts
}
