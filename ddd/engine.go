package ddd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// ErrNoEventBus is returned when a command raises events but the engine has
// no bus to dispatch them to (or, for SendTransaction events, no TxEventBus).
var ErrNoEventBus = errors.New("no event bus configured")

// Option configures an Engine.
type Option func(*Engine) error

// WithEventBus sets the bus the engine dispatches events through.
func WithEventBus(bus EventBus) Option {
	return func(e *Engine) error {
		if bus == nil {
			return errors.New("ddd: WithEventBus: nil bus")
		}
		e.bus = bus
		return nil
	}
}

// WithPostCommitHook adds a hook run after each successful commit that
// dispatched events (for example to wake the bus's poller).
func WithPostCommitHook(hook func(ctx context.Context)) Option {
	return func(e *Engine) error {
		if hook == nil {
			return errors.New("ddd: WithPostCommitHook: nil hook")
		}
		e.postCommit = append(e.postCommit, hook)
		return nil
	}
}

// Engine runs commands as units of work: one GORM transaction per command,
// whose events are dispatched inside that same transaction.
type Engine struct {
	db         *gorm.DB
	bus        EventBus
	postCommit []func(ctx context.Context)
}

// NewEngine returns an engine on db. Wire a bus in with NewEngine(db, bus.Options()...).
func NewEngine(db *gorm.DB, opts ...Option) (*Engine, error) {
	if db == nil {
		return nil, errors.New("ddd: NewEngine: nil db")
	}
	e := &Engine{db: db}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("ddd: NewEngine: nil option")
		}
		if err := o(e); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// UnitOfWork is what a command sees: the transaction and the event sources
// whose events the engine collects when the command returns.
type UnitOfWork struct {
	tx      *gorm.DB
	sources []EventSource
	events  []*DomainEvent
}

// Tx returns the command's transaction.
func (u *UnitOfWork) Tx() *gorm.DB { return u.tx }

// Track registers aggregates whose buffered events are collected after the command.
func (u *UnitOfWork) Track(sources ...EventSource) { u.sources = append(u.sources, sources...) }

// Raise adds events directly.
func (u *UnitOfWork) Raise(events ...*DomainEvent) { u.events = append(u.events, events...) }

func (u *UnitOfWork) collect() []*DomainEvent {
	out := u.events
	for _, s := range u.sources {
		out = append(out, s.PopEvents()...)
	}
	return out
}

// Command is the business logic of one unit of work. ctx carries the
// transaction (see TxFromContext); it is also uow.Tx().
type Command func(ctx context.Context, uow *UnitOfWork) error

// Run executes cmd in one transaction. Events of send type normal or FIFO are
// dispatched inside it, so they exist if and only if it commits. Events of
// send type transaction use the two-phase flow: DispatchBegin inside the
// transaction (on its own when the bus refuses the transaction as being on
// another database, ErrForeignTransaction), then, by what is known of the
// outcome:
//
//   - it committed: Commit;
//   - the command (or a dispatch) failed, or the COMMIT failed in a way
//     that proves a rollback (see rolledBack): a pending transaction
//     written with it is gone with it; one the bus made durable on its own
//     (the business data is on another database) is rolled back;
//   - the COMMIT failed otherwise, so the outcome is unknown (it may have
//     committed with only the reply lost): a pending transaction written
//     with it exists if and only if it committed, so Commit publishes it or
//     finds nothing, and if Commit succeeds Run returns nil, since the unit
//     of work did commit; one the bus made durable on its own is left
//     pending for the bus's TX checker, never rolled back on a guess.
//
// The bus says where DispatchBegin wrote through InTxReporter; without it
// the engine assumes the bus made it durable on its own. Post-commit hooks
// run only after a commit known to have happened.
func (e *Engine) Run(ctx context.Context, cmd Command) error {
	if cmd == nil {
		return errors.New("ddd: Run: nil command")
	}
	var txCtx context.Context
	var dispatched, atCommit bool
	err := e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		cctx := ContextWithTx(ctx, tx)
		uow := &UnitOfWork{tx: tx}
		if err := cmd(cctx, uow); err != nil {
			return err
		}
		var plain, twoPhase []*DomainEvent
		for _, evt := range uow.collect() {
			if evt != nil && evt.SendType == SendTransaction {
				twoPhase = append(twoPhase, evt)
			} else {
				plain = append(plain, evt)
			}
		}
		if len(plain) > 0 {
			if e.bus == nil {
				return ErrNoEventBus
			}
			if err := e.bus.Dispatch(cctx, plain...); err != nil {
				return fmt.Errorf("dispatch events: %w", err)
			}
			dispatched = true
		}
		if len(twoPhase) > 0 {
			txBus, ok := e.bus.(txDispatcher)
			if !ok {
				return fmt.Errorf("%w: SendTransaction events need a TxEventBus", ErrNoEventBus)
			}
			c, err := txBus.DispatchBegin(cctx, twoPhase...)
			if errors.Is(err, ErrForeignTransaction) {
				// The command's data is in another database than the
				// bus's: the message is begun on its own, as the
				// two-phase flow is designed for.
				c, err = txBus.DispatchBegin(ctx, twoPhase...)
			}
			if err != nil {
				return fmt.Errorf("begin transactional events: %w", err)
			}
			txCtx = c
		}
		atCommit = true // an error from here on is the COMMIT's
		return nil
	})
	if txCtx != nil {
		if err = e.finishTwoPhase(txCtx, err, atCommit); err != nil {
			return err
		}
		dispatched = true
	}
	if err != nil {
		return err
	}
	if dispatched {
		for _, h := range e.postCommit {
			h(ctx)
		}
	}
	return nil
}

// finishTwoPhase resolves the pending transaction carried by txCtx after
// the business transaction ended with err; atCommit says err came from its
// COMMIT rather than from the command. It returns nil only if the business
// transaction is known to have committed and the events were published.
func (e *Engine) finishTwoPhase(txCtx context.Context, err error, atCommit bool) error {
	txBus := e.bus.(txDispatcher)
	withBusiness := false
	if r, ok := e.bus.(InTxReporter); ok {
		withBusiness = r.BegunInTx(txCtx)
	}
	switch {
	case err == nil:
		if cErr := txBus.Commit(txCtx); cErr != nil {
			// The business change is committed; the TX checker resolves the rest.
			return fmt.Errorf("commit transactional events (the TX checker will resolve them): %w", cErr)
		}
		return nil
	case !atCommit || rolledBack(e.db, err):
		// Certainly rolled back: what was written with it is gone with it.
		if !withBusiness {
			if rbErr := txBus.Rollback(txCtx); rbErr != nil {
				return errors.Join(err, fmt.Errorf("rollback transactional events: %w", rbErr))
			}
		}
		return err
	case withBusiness:
		cErr := txBus.Commit(txCtx)
		if cErr == nil {
			return nil // it committed: only the COMMIT's reply was lost
		}
		return fmt.Errorf("%w (outcome unknown: its transactional events are published if it committed, by the TX checker if not now: %v)", err, cErr)
	default:
		return fmt.Errorf("%w (outcome unknown: the TX checker resolves its transactional events)", err)
	}
}

// rolledBack reports whether err, returned by the COMMIT of a transaction
// on db, means that transaction certainly rolled back. SQLite runs in the
// process, so no reply can be lost, and its driver rolls back a COMMIT that
// failed. A server that answers a COMMIT with an SQLSTATE of class 23
// (a deferred constraint) or 40 (serialization failure, deadlock) rolled
// it back. Anything else (a lost connection, a timeout, a server shutting
// down, an error without an SQLSTATE, as MySQL's driver returns) leaves the
// outcome unknown: a server can fail a COMMIT after committing locally.
func rolledBack(db *gorm.DB, err error) bool {
	if db.Dialector != nil && db.Dialector.Name() == "sqlite" {
		return true
	}
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		class := coded.SQLState()
		return strings.HasPrefix(class, "23") || strings.HasPrefix(class, "40")
	}
	return false
}
