package ddd

import (
	"context"
	"errors"
)

// DomainEventHandler handles one event for a consuming service. A nil error
// marks the event handled; any other error (or a panic) is a failure that
// the bus retries. Delivery is at-least-once: use DomainEvent.ID as the
// idempotency key.
type DomainEventHandler func(ctx context.Context, evt *DomainEvent) error

// TxStatus is a Tx checker's verdict on a pending transactional message.
type TxStatus int8

const (
	// TxUnknown asks the bus to check again later.
	TxUnknown TxStatus = iota
	// TxCommit publishes the transaction's events.
	TxCommit
	// TxRollback discards them.
	TxRollback
)

func (s TxStatus) String() string {
	switch s {
	case TxCommit:
		return "commit"
	case TxRollback:
		return "rollback"
	}
	return "unknown"
}

// DomainEventTxChecker decides the fate of a transactional message whose
// producer never called Commit or Rollback. It sees every event of the
// transaction. An error counts as TxUnknown.
type DomainEventTxChecker func(ctx context.Context, events []*DomainEvent) (TxStatus, error)

// The names below are the former, TX-spelled ones; the module spells the
// word Tx, as database/sql does.

// Deprecated: use TxStatus.
type TXStatus = TxStatus

const (
	// Deprecated: use TxUnknown.
	TXUnknown = TxUnknown
	// Deprecated: use TxCommit.
	TXCommit = TxCommit
	// Deprecated: use TxRollback.
	TXRollback = TxRollback
)

// Deprecated: use DomainEventTxChecker.
type DomainEventTXChecker = DomainEventTxChecker

// ErrNoHandler is returned by a handler (typically a Router) that has nothing
// to do for an event. The bus counts such an event as skipped, not failed,
// when the error says nothing else (see IsNoHandler).
var ErrNoHandler = errors.New("no handler for event")

// IsNoHandler reports whether err says only that no handler exists for the
// event: it is ErrNoHandler, possibly wrapped, and every error joined with
// it says the same. errors.Join(failure, ErrNoHandler) is not: it reports
// a failure, which the bus retries. The bus skips an event only when its
// handler's error passes this test.
func IsNoHandler(err error) bool {
	if err == nil {
		return false
	}
	if err == ErrNoHandler {
		return true
	}
	if x, ok := err.(interface{ Is(error) bool }); ok && x.Is(ErrNoHandler) {
		return true
	}
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		errs := e.Unwrap()
		for _, inner := range errs {
			if !IsNoHandler(inner) {
				return false
			}
		}
		return len(errs) > 0
	case interface{ Unwrap() error }:
		return IsNoHandler(e.Unwrap())
	}
	return false
}

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return "permanent: " + p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent wraps err so the bus skips the remaining retries and makes the
// event a dead letter at once (for example a payload that cannot be decoded).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was wrapped by Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
