package eventbus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

const (
	// txClaim is how long a check owns a transaction: another instance
	// checks it again only if this one dies before recording the answer.
	txClaim = time.Minute
	// txCheckCall bounds one call of the checker.
	txCheckCall = 30 * time.Second
	// txMaxDelay caps the growing delay between checks.
	txMaxDelay = time.Hour
	txDuePage  = 50
)

// RegisterEventTXChecker sets the checker asked about this service's pending
// transactions once they pass TXCheckTimeout unresolved. It may be set once.
// Without one, such transactions are marked unresolved (never rolled back
// silently) and listed by UnresolvedTransactions.
func (b *EventBus) RegisterEventTXChecker(c ddd.DomainEventTXChecker) error {
	if c == nil {
		return fmt.Errorf("%w: nil TX checker", ErrInvalidHandler)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.txChecker != nil {
		return ErrHandlerRegistered
	}
	b.txChecker = c
	return nil
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
		ids, err := queryInt64s(ctx, b.sqlDB, b.q.dueTxs, b.service, txDuePage)
		if err != nil {
			return resolved, fmt.Errorf("due transactions: %w", err)
		}
		for _, id := range ids {
			done, err := b.checkTx(ctx, id)
			if err != nil {
				return resolved, err
			}
			if done {
				resolved++
			}
		}
		if len(ids) < txDuePage || ctx.Err() != nil {
			return resolved, ctx.Err()
		}
	}
}

// checkTx claims transaction id (so no other instance checks it meanwhile),
// asks the checker and records the answer.
func (b *EventBus) checkTx(ctx context.Context, id int64) (bool, error) {
	res, err := b.sqlDB.ExecContext(ctx, b.q.claimTx, txClaim.Milliseconds(), id)
	if err != nil {
		return false, fmt.Errorf("claim transaction %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err // resolved or claimed by another instance meanwhile
	}
	var checks int
	if err := b.sqlDB.QueryRowContext(ctx, b.q.txChecks, id).Scan(&checks); err != nil {
		return false, fmt.Errorf("read transaction %d: %w", id, err)
	}
	b.mu.Lock()
	checker := b.txChecker
	b.mu.Unlock()
	if checker == nil {
		return true, b.rescheduleTx(ctx, id, checks, txUnresolved, 0, "no TX checker registered")
	}
	events, err := b.txEvents(ctx, id)
	if err != nil {
		return false, err
	}
	status, cerr := b.askChecker(ctx, checker, events)
	switch {
	case cerr == nil && status == ddd.TXCommit:
		return true, ignoreResolved(b.CommitTransaction(ctx, id))
	case cerr == nil && status == ddd.TXRollback:
		return true, ignoreResolved(b.RollbackTransaction(ctx, id))
	}
	reason := "checker answered unknown"
	if cerr != nil {
		reason = "checker error: " + errorText(cerr)
		b.log.Warn("eventbus: TX checker failed", "tx", id, "err", firstLine(cerr))
	}
	if checks >= b.opts.TXCheckMaxChecks {
		b.log.Warn("eventbus: transaction unresolved after max checks", "tx", id, "checks", checks)
		return true, b.rescheduleTx(ctx, id, checks, txUnresolved, 0, reason)
	}
	return false, b.rescheduleTx(ctx, id, checks, txPending, checkDelay(b.opts.TXCheckTimeout, checks), reason)
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

// ignoreResolved: someone else resolved the transaction first; that is fine.
func ignoreResolved(err error) error {
	if errors.Is(err, ErrTxCommitted) || errors.Is(err, ErrTxRolledBack) || errors.Is(err, ErrTxNotFound) {
		return nil
	}
	return err
}

func (b *EventBus) rescheduleTx(ctx context.Context, id int64, checks, state int, delay time.Duration, reason string) error {
	if _, err := b.sqlDB.ExecContext(ctx, b.q.rescheduleTx, state, delay.Milliseconds(), reason, id, checks); err != nil {
		return fmt.Errorf("reschedule transaction %d: %w", id, err)
	}
	return nil
}

// askChecker calls the checker with a timeout; a panic counts as an error.
func (b *EventBus) askChecker(ctx context.Context, c ddd.DomainEventTXChecker, events []*ddd.DomainEvent) (status ddd.TXStatus, err error) {
	ctx, cancel := context.WithTimeout(ctx, txCheckCall)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			status, err = ddd.TXUnknown, fmt.Errorf("TX checker panic: %v\n%s", p, debug.Stack())
		}
	}()
	return c(ctx, events)
}

func (b *EventBus) txEvents(ctx context.Context, id int64) ([]*ddd.DomainEvent, error) {
	rows, err := b.sqlDB.QueryContext(ctx, b.q.txEventsOf, id)
	if err != nil {
		return nil, fmt.Errorf("transaction %d events: %w", id, err)
	}
	defer rows.Close()
	var out []*ddd.DomainEvent
	for rows.Next() {
		evt, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, evt)
	}
	return out, rows.Err()
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
	rows, err := b.sqlDB.QueryContext(ctx, b.q.unresolvedTxs, b.service, after, limit)
	if err != nil {
		return nil, fmt.Errorf("unresolved transactions: %w", err)
	}
	var out []UnresolvedTx
	for rows.Next() {
		var u UnresolvedTx
		var created, updated int64
		if err := rows.Scan(&u.ID, &u.Checks, &u.LastError, &created, &updated); err != nil {
			rows.Close()
			return nil, err
		}
		u.CreatedAt, u.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
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
	var n int64
	err := b.sqlDB.QueryRowContext(ctx, b.q.countUnresolved, b.service).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}
