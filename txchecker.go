package eventbus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

const (
	// txMaxDelay caps the growing delay between checks.
	txMaxDelay = time.Hour
	txDuePage  = 50
)

// txClaim is how long a check owns a transaction: the call's limit plus a
// margin (the limit again, at least 30s) for reading its events and
// recording the answer. Another instance asks about it again only if this
// one died or stalled that long; the answer is applied only while the claim
// holds.
func (b *EventBus) txClaim() time.Duration {
	limit := b.opts.TXCheckCallTimeout
	return limit + max(limit, 30*time.Second)
}

// RegisterEventTxChecker sets the checker asked about this service's pending
// transactions once they pass TxCheckTimeout unresolved. It may be set once.
// Without one, such transactions are marked unresolved (never rolled back
// silently) and listed by UnresolvedTransactions.
func (b *EventBus) RegisterEventTxChecker(c ddd.DomainEventTxChecker) error {
	if c == nil {
		return fmt.Errorf("%w: nil Tx checker", ErrInvalidHandler)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.txChecker != nil {
		return ErrHandlerRegistered
	}
	b.txChecker = c
	return nil
}

// RegisterEventTXChecker is RegisterEventTxChecker (ddd.TXEventBus needs it).
//
// Deprecated: use RegisterEventTxChecker.
func (b *EventBus) RegisterEventTXChecker(c ddd.DomainEventTXChecker) error {
	return b.RegisterEventTxChecker(c)
}

// runTXChecker checks due transactions until ctx is cancelled. Errors are
// logged and retried with backoff; they never stop the bus.
func (b *EventBus) runTXChecker(ctx context.Context) {
	interval := min(max(b.opts.TXCheckTimeout/4, b.opts.RunInterval), 10*time.Second)
	var backoff time.Duration
	for {
		wait := interval
		if _, err := b.CheckTransactions(ctx); err != nil && ctx.Err() == nil {
			backoff = nextBackoff(backoff, interval)
			wait = backoff
			b.log.Error("eventbus: TX check failed; backing off", "err", err, "backoff", backoff)
		} else {
			backoff = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// CheckTransactions checks this service's due pending transactions now and
// returns how many it resolved (committed, rolled back or marked
// unresolved). Start runs it periodically.
func (b *EventBus) CheckTransactions(ctx context.Context) (int, error) {
	resolved := 0
	// Page until a short page: every transaction of a page leaves the due
	// set (claimed and rescheduled, resolved, or claimed by another
	// instance), so the next page holds only ones not seen yet.
	for {
		due, err := b.dueTxs(ctx)
		if err != nil {
			return resolved, fmt.Errorf("due transactions: %w", err)
		}
		for _, t := range due {
			done, err := b.checkTx(ctx, t.ID, t.Checks)
			if err != nil {
				return resolved, err
			}
			if done {
				resolved++
			}
		}
		if len(due) < txDuePage || ctx.Err() != nil {
			return resolved, ctx.Err()
		}
	}
}

func (b *EventBus) dueTxs(ctx context.Context) ([]store.DueTx, error) {
	return b.st.DueTxs(ctx, b.service, txDuePage)
}

// checkTx claims transaction id, seen with checks checks, so that no other
// instance asks about it meanwhile; asks the checker; and records the
// answer if the claim still holds.
func (b *EventBus) checkTx(ctx context.Context, id int64, checks int) (bool, error) {
	claimed, err := b.st.ClaimTx(ctx, id, checks, b.txClaim().Milliseconds())
	if err != nil {
		return false, fmt.Errorf("claim transaction %d: %w", id, err)
	}
	if !claimed {
		return false, nil // resolved or claimed by another instance meanwhile
	}
	claim := checks + 1 // this check's number: the claim holds while it is stored
	b.mu.Lock()
	checker := b.txChecker
	b.mu.Unlock()
	if checker == nil {
		return b.recordCheck(id, claim, b.rescheduleTx(ctx, id, claim, txUnresolved, 0, "no TX checker registered"))
	}
	events, err := b.txEvents(ctx, id)
	if err != nil {
		return false, err
	}
	status, cerr := b.askChecker(ctx, checker, events)
	if ctx.Err() != nil {
		return false, ctx.Err() // stopping: the claim lapses and the next check asks again
	}
	switch {
	case cerr == nil && status == ddd.TXCommit:
		err := b.resolveTx(ctx, txRef{id: id, claim: claim}, txCommitted)
		if err == nil {
			b.committed()
		}
		return b.recordCheck(id, claim, err)
	case cerr == nil && status == ddd.TXRollback:
		return b.recordCheck(id, claim, b.resolveTx(ctx, txRef{id: id, claim: claim}, txRolledBack))
	}
	reason := "checker answered unknown"
	if cerr != nil {
		reason = "checker error: " + errorText(cerr)
		b.log.Warn("eventbus: TX checker failed", "tx", id, "err", firstLine(cerr))
	}
	if claim >= b.opts.TXCheckMaxChecks {
		b.log.Warn("eventbus: transaction unresolved after max checks", "tx", id, "checks", claim)
		return b.recordCheck(id, claim, b.rescheduleTx(ctx, id, claim, txUnresolved, 0, reason))
	}
	_, err = b.recordCheck(id, claim, b.rescheduleTx(ctx, id, claim, txPending, checkDelay(b.opts.TXCheckTimeout, claim), reason))
	return false, err
}

// recordCheck reports the outcome of recording check number claim of id:
// resolved, or not because the claim was lost (the answer is discarded, as
// another instance asks or has asked), or an error.
func (b *EventBus) recordCheck(id int64, claim int, err error) (bool, error) {
	if errors.Is(err, errClaimLost) {
		b.log.Warn("eventbus: TX check answer discarded: its claim lapsed or another instance took it", "tx", id, "check", claim)
		return false, nil
	}
	return err == nil, err
}

// checkDelay grows the wait before check n+1: TXCheckTimeout doubled per
// check, capped at txMaxDelay (or at TXCheckTimeout if that is longer: a
// later check never comes sooner than the first).
func checkDelay(base time.Duration, checks int) time.Duration {
	limit := max(base, txMaxDelay)
	d := base
	for i := 1; i < checks && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// rescheduleTx records an answer that resolved nothing: the transaction
// stays pending until delay has passed, or becomes unresolved. Only while
// check number claim holds; errClaimLost otherwise.
func (b *EventBus) rescheduleTx(ctx context.Context, id int64, claim int, state store.TxState, delay time.Duration, reason string) error {
	held, err := b.st.RescheduleTx(ctx, store.RescheduleTxParams{ID: id, Claim: claim, State: state, DelayMillis: delay.Milliseconds(), Reason: reason})
	if err != nil {
		return fmt.Errorf("reschedule transaction %d: %w", id, err)
	}
	if !held {
		return errClaimLost
	}
	return nil
}

// askChecker calls the checker with a deadline of TXCheckCallTimeout. A
// panic, an error, or no answer by the deadline counts as unknown (with an
// error saying why). A call that ignores its context is abandoned at the
// deadline, or when ctx ends: it may go on running, its answer discarded,
// and nothing waits for it.
func (b *EventBus) askChecker(ctx context.Context, c ddd.DomainEventTXChecker, events []*ddd.DomainEvent) (ddd.TXStatus, error) {
	limit := b.opts.TXCheckCallTimeout
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	type answer struct {
		status ddd.TXStatus
		err    error
	}
	answered := make(chan answer, 1) // buffered: an abandoned call never blocks
	go func() {
		a := answer{status: ddd.TXUnknown}
		defer func() {
			if p := recover(); p != nil {
				a = answer{ddd.TXUnknown, fmt.Errorf("TX checker panic: %v\n%s", p, debug.Stack())}
			}
			answered <- a
		}()
		a.status, a.err = c(cctx, events)
	}()
	select {
	case a := <-answered:
		if cctx.Err() == nil {
			return a.status, a.err
		}
	case <-cctx.Done():
	}
	if ctx.Err() != nil {
		return ddd.TXUnknown, ctx.Err()
	}
	return ddd.TXUnknown, fmt.Errorf("TX checker gave no answer within %s (a later answer is ignored)", limit)
}

func (b *EventBus) txEvents(ctx context.Context, id int64) ([]*ddd.DomainEvent, error) {
	out, err := b.st.TxEvents(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("transaction %d events: %w", id, err)
	}
	return out, nil
}

// UnresolvedTx is a transaction the checker could not resolve.
type UnresolvedTx struct {
	ID        int64
	Checks    int
	LastError string
	CreatedAt time.Time
	UpdatedAt time.Time
	Events    []*ddd.DomainEvent
}

// UnresolvedTransactions lists this service's unresolved transactions with
// id > after, at most limit (1..1000). Resolve them with CommitTransaction
// or RollbackTransaction.
func (b *EventBus) UnresolvedTransactions(ctx context.Context, after int64, limit int) ([]UnresolvedTx, error) {
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit must be 1..1000, got %d", ErrInvalidArgument, limit)
	}
	rows, err := b.st.ListTxs(ctx, store.TxListParams{Service: b.service, States: []store.TxState{txUnresolved}, After: after, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("unresolved transactions: %w", err)
	}
	out := make([]UnresolvedTx, len(rows))
	for i, r := range rows {
		out[i] = UnresolvedTx{ID: r.ID, Checks: r.Checks, LastError: r.LastError,
			CreatedAt: time.UnixMilli(r.CreatedAt).UTC(), UpdatedAt: time.UnixMilli(r.UpdatedAt).UTC()}
	}
	for i := range out {
		if out[i].Events, err = b.txEvents(ctx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CountUnresolvedTransactions returns how many of this service's
// transactions are unresolved.
func (b *EventBus) CountUnresolvedTransactions(ctx context.Context) (int64, error) {
	return b.st.CountUnresolvedTxs(ctx, b.service)
}
