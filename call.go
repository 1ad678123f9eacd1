package eventbus

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// call is one handler call. It runs on a goroutine of its own, so that the
// bus can stop waiting for a call that ignores its context: Go cannot stop
// a goroutine, only stop waiting for it.
type call struct {
	evt     *ddd.DomainEvent
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{} // closed once the handler returned, or did not start
	res     result        // the handler's result, set before done is closed

	// Guarded by holds.mu.
	finished bool
	hold     *hold // set when the bus stopped waiting for the call
}

// callRow says where a call's event is stored, should the call be set aside.
type callRow struct {
	pk       int64
	attempts int   // failed attempts before this call
	epoch    int64 // lease the batch or retry phase runs under
}

// abandonGrace is how long a call may run past HandlerTimeout (its context
// cancelled) before it is abandoned: half the timeout, 100ms to 5s.
func abandonGrace(timeout time.Duration) time.Duration {
	return min(max(timeout/2, 100*time.Millisecond), 5*time.Second)
}

// setAsideAfter is how long a batch waits for one call when HandlerTimeout
// is 0 (EventBus.setAsideAfter, if set, overrides it in tests).
const setAsideAfter = time.Minute

// invoke calls the handler for evt and waits for it, and reports what became
// of the event. The wait ends when the call returns, or:
//   - HandlerTimeout plus abandonGrace after it started: the call is
//     abandoned, a failed attempt;
//   - with no HandlerTimeout, setAsideAfter after it started: the call is
//     set aside (pending), its result recorded when it returns;
//   - when parent is cancelled (a stop's grace is over): the event is left
//     unfinished.
//
// In each case the call's sender is held until the call returns (see holds).
// admit is Start's context: the call does not start if it is cancelled.
// parent is the handler's context: Start's values, cancelled when a stop's
// grace is over; a panic is recovered and counts as a failure.
func (b *EventBus) invoke(admit, parent context.Context, h ddd.DomainEventHandler, evt *ddd.DomainEvent, row callRow) result {
	c := &call{evt: evt, started: time.Now(), done: make(chan struct{})}
	timeout := b.opts.HandlerTimeout
	var ctx context.Context
	var aside <-chan time.Time
	if timeout > 0 {
		ctx, c.cancel = context.WithTimeout(parent, timeout)
	} else {
		ctx, c.cancel = context.WithCancel(parent)
		wait := setAsideAfter
		if b.setAsideAfter > 0 {
			wait = b.setAsideAfter
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		aside = t.C
	}
	go b.runCall(admit, ctx, h, c)
	select {
	case <-c.done:
		return b.finished(c)
	case <-aside:
		return b.letGo(c, &hold{kind: heldSetAside, row: row})
	case <-ctx.Done():
	}
	if parent.Err() == nil {
		// HandlerTimeout has passed and the call's context is cancelled: a
		// handler that honours it returns within the grace.
		t := time.NewTimer(abandonGrace(timeout))
		defer t.Stop()
		select {
		case <-c.done:
			return b.finished(c)
		case <-t.C:
			return b.letGo(c, &hold{kind: heldAbandoned})
		case <-parent.Done():
		}
	}
	return b.letGo(c, &hold{kind: heldAtStop})
}

// runCall runs on the call's own goroutine.
func (b *EventBus) runCall(admit, ctx context.Context, h ddd.DomainEventHandler, c *call) {
	defer b.callReturned(c)
	// Checked here, on the goroutine that calls the handler, right before
	// the call: once Start's context is cancelled no call starts.
	if admit.Err() != nil {
		return // c.res stays unfinished
	}
	defer func() {
		if p := recover(); p != nil {
			c.res = result{verdict: failed, err: fmt.Errorf("handler panic: %v\n%s", p, debug.Stack())}
		}
	}()
	c.res = outcome(h(ctx, c.evt))
}

// finished counts the result of a call that returned in time.
func (b *EventBus) finished(c *call) result {
	b.count(c.evt, c.res)
	return c.res
}

func (b *EventBus) count(evt *ddd.DomainEvent, res result) {
	switch res.verdict {
	case handled:
		b.stats.handled.Add(1)
	case skipped:
		b.stats.skipped.Add(1)
	case failed:
		b.stats.failed.Add(1)
		b.log.Warn("eventbus: handler failed", "event_id", evt.ID, "type", evt.Type, "sender", evt.Sender, "err", firstLine(res.err))
	}
}

// letGo stops waiting for c and holds its sender until it returns, unless
// it has just returned.
func (b *EventBus) letGo(c *call, hd *hold) result {
	if !b.holds.add(c, hd) {
		return b.finished(c)
	}
	b.stats.unreturned.Add(1)
	evt, ran := c.evt, time.Since(c.started).Round(time.Millisecond)
	attrs := []any{"event_id", evt.ID, "type", evt.Type, "sender", evt.Sender, "running", ran}
	switch hd.kind {
	case heldSetAside:
		b.stats.setAside.Add(1)
		b.log.Warn("eventbus: handler call set aside: still running (HandlerTimeout 0); its event waits in the retry store and its sender gets nothing else until it returns", attrs...)
		return result{verdict: pending}
	case heldAtStop:
		b.stats.abandoned.Add(1)
		b.log.Warn("eventbus: handler call abandoned at stop: still running when ShutdownGrace ran out; its context is cancelled and its event left to the next owner", attrs...)
		return result{}
	}
	b.stats.abandoned.Add(1)
	b.stats.failed.Add(1)
	b.log.Warn("eventbus: handler call abandoned: it ignored its context past HandlerTimeout; counted as a failed attempt, its sender gets nothing else until it returns",
		append(attrs, "handler_timeout", b.opts.HandlerTimeout)...)
	return result{verdict: failed, err: fmt.Errorf("handler abandoned: still running %s after it started, past HandlerTimeout %s and a grace of %s",
		ran, b.opts.HandlerTimeout, abandonGrace(b.opts.HandlerTimeout))}
}

// callReturned runs on the call's goroutine when the handler returned (or
// did not start). The result of an abandoned call is ignored; a set-aside
// call's is counted here and recorded by the next retry phase.
func (b *EventBus) callReturned(c *call) {
	hd := b.holds.returned(c)
	close(c.done)
	c.cancel()
	if hd == nil {
		return
	}
	b.stats.unreturned.Add(-1)
	attrs := []any{"event_id", c.evt.ID, "type", c.evt.Type, "sender", c.evt.Sender, "ran", time.Since(c.started).Round(time.Millisecond)}
	if hd.kind == heldSetAside {
		b.count(c.evt, c.res)
		b.log.Info("eventbus: set-aside handler call returned; its result is recorded by the next retry phase", attrs...)
		return
	}
	b.log.Info("eventbus: abandoned handler call returned; its result is ignored", attrs...)
}
