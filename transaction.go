package eventbus

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

// Transaction states, as the store names them.
const (
	txPending    = store.TxPending
	txCommitted  = store.TxCommitted
	txRolledBack = store.TxRolledBack
	txUnresolved = store.TxUnresolved // the checker gave up (or none is registered); resolve by hand
)

// pendingTx is what DispatchBegin's context carries: the transaction's id,
// the random token stored beside it, and whether it was written with the
// caller's transaction.
type pendingTx struct {
	id, token int64
	inTx      bool
}

type pendingTxKey struct{}

func pendingOf(ctx context.Context) (pendingTx, bool) {
	p, ok := ctx.Value(pendingTxKey{}).(pendingTx)
	return p, ok
}

// TxID returns the id of the pending transaction carried by ctx, for logs
// and for operators (CommitTransaction, RollbackTransaction). Resolve it with
// Commit or Rollback on that ctx, which act only on the transaction ctx
// began: an id whose transaction never became durable (written with a
// business transaction that rolled back) can be handed out again, at once
// on SQLite, after a server crash on MySQL and PostgreSQL. The id of a
// durable transaction is never reused.
func TxID(ctx context.Context) (int64, bool) {
	p, ok := pendingOf(ctx)
	return p.id, ok
}

// BegunInTx reports whether the pending transaction carried by ctx was
// written with the transaction DispatchBegin's ctx carried, so that it
// exists if and only if that transaction committed (see ddd.InTxReporter).
func (b *EventBus) BegunInTx(ctx context.Context) bool {
	p, ok := pendingOf(ctx)
	return ok && p.inTx
}

// newTxToken draws the token that, with the id, names a transaction in its
// context: random, so no other transaction given the same id has it.
func newTxToken() int64 {
	var r [8]byte
	_, _ = rand.Read(r[:]) // never fails (crypto/rand)
	if t := int64(binary.BigEndian.Uint64(r[:]) >> 1); t != 0 {
		return t
	}
	return 1
}

// DispatchBegin records events as a pending transaction of this service,
// invisible to consumers, and returns a context carrying it for Commit or
// Rollback: its id and a random token stored beside it, so that the
// context resolves only this transaction. The record is durable when
// DispatchBegin returns, unless ctx carries a transaction: then it is
// written in that transaction and exists if and only if it commits
// (BegunInTx reports which). That transaction must be on the bus's
// database, as for Dispatch (ErrForeignTransaction, ErrInvalidTransaction
// otherwise). If neither Commit nor Rollback follows within
// TXCheckTimeout, the TX checker decides.
func (b *EventBus) DispatchBegin(ctx context.Context, events ...*ddd.DomainEvent) (_ context.Context, err error) {
	if ctx == nil {
		return ctx, fmt.Errorf("%w: nil context", ErrInvalidArgument)
	}
	if len(events) == 0 {
		return ctx, fmt.Errorf("%w: DispatchBegin needs at least one event", ErrInvalidEvent)
	}
	_, observed := b.observeDispatch(ctx, events, true) // the context returned stays the caller's
	defer func() { observed(err) }()
	rows, err := b.eventRows(events, "dispatch begin")
	if err != nil {
		return ctx, err
	}
	// The same rules as Dispatch: a transaction in ctx is used if it is on
	// the bus's database, and refused otherwise.
	conn, inCallerTx, err := b.st.CallerTx(ctx)
	if err != nil {
		return ctx, err
	}
	token := newTxToken()
	id, err := b.st.BeginTx(ctx, conn, store.BeginTxParams{Service: b.service, Token: token, DueMillis: b.opts.TXCheckTimeout.Milliseconds(), Events: rows})
	if err != nil {
		return ctx, fmt.Errorf("dispatch begin: %w", err)
	}
	return context.WithValue(ctx, pendingTxKey{}, pendingTx{id: id, token: token, inTx: inCallerTx}), nil
}

// Commit publishes the pending transaction carried by ctx: its events are
// appended to the log as new entries (so consumers already past older
// positions still receive them) and the transaction is marked committed,
// atomically. It always uses its own database transaction, and acts only on
// the transaction ctx began. Calling it again, or after the checker
// committed, returns nil; after a rollback it returns ErrTxRolledBack. If
// the transaction never became durable (it was written with a business
// transaction that rolled back) it returns ErrTxNotFound; if it was
// resolved and then removed by the cleaner, ErrTxCleaned.
func (b *EventBus) Commit(ctx context.Context) error {
	p, ok := pendingOf(ctx)
	if !ok {
		return ErrNoTransaction
	}
	err := b.resolveTx(context.WithoutCancel(ctx), txRef{id: p.id, token: p.token}, txCommitted)
	if err == nil {
		b.committed()
	}
	return err
}

// Rollback discards the pending transaction carried by ctx, and only that
// one. Calling it again, or for a transaction that never became durable,
// returns nil; after a commit it returns ErrTxCommitted; after the cleaner
// removed the resolved transaction, ErrTxCleaned (its resolution is no
// longer known).
func (b *EventBus) Rollback(ctx context.Context) error {
	p, ok := pendingOf(ctx)
	if !ok {
		return ErrNoTransaction
	}
	return nilIfNotFound(b.resolveTx(context.WithoutCancel(ctx), txRef{id: p.id, token: p.token}, txRolledBack))
}

// CommitTransaction commits transaction id by hand (for example one the
// checker left unresolved). See Commit. Only the service that began a
// transaction resolves it; another service's bus gets ErrTxOtherService.
func (b *EventBus) CommitTransaction(ctx context.Context, id int64) error {
	err := b.resolveTx(ctx, txRef{id: id}, txCommitted)
	if err == nil {
		b.committed()
	}
	return err
}

// RollbackTransaction rolls transaction id back by hand. See Rollback.
func (b *EventBus) RollbackTransaction(ctx context.Context, id int64) error {
	return nilIfNotFound(b.resolveTx(ctx, txRef{id: id}, txRolledBack))
}

// nilIfNotFound: a rollback of a transaction that never became durable has
// nothing to discard.
func nilIfNotFound(err error) error {
	if errors.Is(err, ErrTxNotFound) {
		return nil
	}
	return err
}

// txRef names the transaction to resolve and says who resolves it.
type txRef struct {
	id    int64
	token int64 // Commit/Rollback(ctx): only the transaction that context began
	claim int   // the TX checker: only while its claim (this check_count) holds
}

// errClaimLost: the checker's claim on a transaction lapsed or was taken by
// another instance before its answer could be applied.
var errClaimLost = errors.New("eventbus: TX check claim lost")

// resolveTx moves a pending or unresolved transaction to state, publishing
// its events on commit. The state change is the guard: only one resolution
// of a transaction can succeed.
func (b *EventBus) resolveTx(ctx context.Context, ref txRef, state store.TxState) error {
	out, err := b.st.ResolveTx(ctx, store.ResolveTxParams{ID: ref.id, Service: b.service, Token: ref.token, Claim: ref.claim, State: state})
	switch {
	case err != nil:
		return err
	case out.Resolved:
		return nil
	case ref.claim > 0:
		return errClaimLost
	case !out.Found:
		return txNotStored(ref.id, out.Watermark)
	case ref.token != 0 && out.Token != ref.token:
		// The id was handed out again: the context's own transaction
		// rolled back with its business transaction.
		return fmt.Errorf("%w: %d (the context's transaction never became durable)", ErrTxNotFound, ref.id)
	case out.Service != b.service:
		return fmt.Errorf("%w: %d is %s's", ErrTxOtherService, ref.id, out.Service)
	case out.State == state:
		return nil
	case out.State == txCommitted:
		return fmt.Errorf("%w: %d", ErrTxCommitted, ref.id)
	case out.State == txRolledBack:
		return fmt.Errorf("%w: %d", ErrTxRolledBack, ref.id)
	default:
		return fmt.Errorf("transaction %d is in state %d", ref.id, out.State)
	}
}

// txNotStored tells a transaction that never existed (ErrTxNotFound) from
// one the cleaner may have removed after it was resolved (ErrTxCleaned): ids
// at or below the highest one it removed (mark). The cleaner deletes and
// raises that mark in one transaction, so a row found missing has its mark.
func txNotStored(id, mark int64) error {
	if id <= mark {
		return fmt.Errorf("%w: %d", ErrTxCleaned, id)
	}
	return fmt.Errorf("%w: %d", ErrTxNotFound, id)
}
