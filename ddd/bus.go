package ddd

import "context"

// EventBus delivers domain events to the services that consume them.
type EventBus interface {
	// Dispatch stores events, in the transaction carried by ctx if there is
	// one; a transaction on another database is refused with an error
	// wrapping ErrForeignTransaction.
	Dispatch(ctx context.Context, events ...*DomainEvent) error
	// RegisterEventHandler sets the handler the bus calls for each event.
	RegisterEventHandler(h DomainEventHandler) error
}

// TxEventBus adds RocketMQ-style transactional (half) messages.
type TxEventBus interface {
	EventBus
	// RegisterEventTxChecker sets the checker that resolves transactions
	// whose producer never called Commit or Rollback.
	RegisterEventTxChecker(c DomainEventTxChecker) error
	// DispatchBegin records events as a pending transaction, invisible to
	// consumers, and returns a context that carries it. The record is durable
	// at once, or commits with the transaction carried by ctx (refused, as by
	// Dispatch, if it is on another database).
	DispatchBegin(ctx context.Context, events ...*DomainEvent) (context.Context, error)
	// Commit publishes the pending transaction carried by ctx.
	Commit(ctx context.Context) error
	// Rollback discards it.
	Rollback(ctx context.Context) error
}

// TXEventBus is TxEventBus with its checker registered under the former
// name. It is an interface of its own rather than an alias, so that a type
// written against it keeps satisfying it; the engine accepts either.
//
// Deprecated: use TxEventBus.
type TXEventBus interface {
	EventBus
	// Deprecated: use TxEventBus.RegisterEventTxChecker.
	RegisterEventTXChecker(c DomainEventTXChecker) error
	DispatchBegin(ctx context.Context, events ...*DomainEvent) (context.Context, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// txDispatcher is what the engine needs of a bus for transactional events;
// both TxEventBus and the deprecated TXEventBus have it.
type txDispatcher interface {
	DispatchBegin(ctx context.Context, events ...*DomainEvent) (context.Context, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// InTxReporter is implemented by a TxEventBus that can tell where
// DispatchBegin wrote a pending transaction. The engine uses it to resolve
// a transaction whose business COMMIT failed with an unknown outcome: one
// written with the business transaction exists if and only if that
// committed, so Commit finds out; one the bus made durable on its own is
// left to the Tx checker, never rolled back on a guess.
type InTxReporter interface {
	// BegunInTx reports whether the pending transaction carried by ctx (as
	// returned by DispatchBegin) was written with the transaction that
	// DispatchBegin's ctx carried.
	BegunInTx(ctx context.Context) bool
}
