package eventbus

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// abandonGrace is how long a call may run past HandlerTimeout (its context
// cancelled) before it is abandoned: half the timeout, 100ms to 5s.
func abandonGrace(timeout time.Duration) time.Duration {
	return min(max(timeout/2, 100*time.Millisecond), 5*time.Second)
}

// setAsideAfter is how long a batch waits for one call when HandlerTimeout
// is 0 (EventBus.setAsideAfter, if set, overrides it in tests).
const setAsideAfter = time.Minute

// invoke calls the handler for evt on this goroutine and returns its
// result, with mine true. The bus stops waiting for the call:
//   - HandlerTimeout plus abandonGrace after it started: the call is
//     abandoned, a failed attempt;
//   - with no HandlerTimeout, setAsideAfter after it started: the call is
//     set aside (pending), its result recorded when it returns;
//   - when parent is cancelled (a stop's grace is over: runBySender calls
//     letGo for the calls in slots): the event is left unfinished.
//
// Then next is called, on another goroutine, with the event's result, and
// the call's sender is held until the handler returns (see holds); when it
// does, invoke returns mine false: the caller was replaced by next's and
// must only exit.
//
// admit is Start's context: the call does not start (unfinished, mine) if it
// is cancelled, checked right before the handler. parent is the handler's
// context: Start's values, cancelled when a stop's grace is over; slot
// holds the call while it runs. A panic is recovered and counts as a failure.
func (b *EventBus) invoke(admit, parent context.Context, h ddd.DomainEventHandler, evt *ddd.DomainEvent,
	row callRow, slot *atomic.Pointer[call], next func(result)) (res result, mine bool) {
	if admit.Err() != nil {
		return result{}, true
	}
	c := &call{ctx: parent, evt: evt, started: time.Now(), next: next}
	timeout := b.opts.HandlerTimeout
	var ctx context.Context
	var cancel context.CancelFunc
	var watchdog *time.Timer
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(parent, timeout)
		watchdog = time.AfterFunc(timeout+abandonGrace(timeout), func() { b.letGo(c, &hold{kind: heldAbandoned}) })
	} else {
		ctx, cancel = context.WithCancel(parent)
		wait := setAsideAfter
		if b.setAsideAfter > 0 {
			wait = b.setAsideAfter
		}
		watchdog = time.AfterFunc(wait, func() { b.letGo(c, &hold{kind: heldSetAside, row: row}) })
	}
	slot.Store(c)
	if parent.Err() != nil { // the stop's grace ran out as the call started
		b.letGo(c, &hold{kind: heldAtStop})
	}
	res = run(ctx, h, evt)
	watchdog.Stop()
	cancel()
	hd := b.holds.returned(c, res)
	slot.Store(nil)
	if hd == nil {
		b.count(res)
		return res, true
	}
	b.returnedLate(c, hd, res)
	return res, false
}

// run calls h, recovering a panic as a failure.
func run(ctx context.Context, h ddd.DomainEventHandler, evt *ddd.DomainEvent) (res result) {
	defer func() {
		if p := recover(); p != nil {
			res = result{verdict: failed, err: fmt.Errorf("handler panic: %v\n%s", p, debug.Stack())}
		}
	}()
	return outcome(h(ctx, evt))
}

func (b *EventBus) count(res result) {
	switch res.verdict {
	case handled:
		b.stats.handled.Add(1)
	case skipped:
		b.stats.skipped.Add(1)
	case failed:
		b.stats.failed.Add(1) // logged with what follows, by nextAttempt
	}
}

// letGo stops waiting for c, unless it has returned or was let go already:
// it holds c's sender and hands the event's result to c.next.
func (b *EventBus) letGo(c *call, hd *hold) {
	if !b.holds.add(c, hd) {
		return
	}
	b.stats.unreturned.Add(1)
	evt, ran := c.evt, time.Since(c.started).Round(time.Millisecond)
	attrs := []any{"event_id", evt.ID, "type", evt.Type, "sender", evt.Sender, "running", ran}
	switch hd.kind {
	case heldSetAside:
		b.stats.setAside.Add(1)
		b.log.WarnContext(c.ctx, "eventbus: handler call set aside: still running (HandlerTimeout 0); its event waits in the retry store and its sender gets nothing else until it returns", attrs...)
		c.next(result{verdict: pending})
	case heldAtStop:
		b.stats.abandoned.Add(1)
		b.log.WarnContext(c.ctx, "eventbus: handler call abandoned at stop: still running when ShutdownGrace ran out; its context is cancelled and its event left to the next owner", attrs...)
		c.next(result{})
	default:
		b.stats.abandoned.Add(1)
		b.stats.failed.Add(1)
		b.log.WarnContext(c.ctx, "eventbus: handler call abandoned: it ignored its context past HandlerTimeout; counted as a failed attempt, its sender gets nothing else until it returns",
			append(attrs, "handler_timeout", b.opts.HandlerTimeout)...)
		c.next(result{verdict: failed, err: fmt.Errorf("handler abandoned: still running %s after it started, past HandlerTimeout %s and a grace of %s",
			ran, b.opts.HandlerTimeout, abandonGrace(b.opts.HandlerTimeout))})
	}
}

// returnedLate logs a call the bus had stopped waiting for. An abandoned
// call's result is ignored; a set-aside call's is counted here and
// recorded by the next retry phase.
func (b *EventBus) returnedLate(c *call, hd *hold, res result) {
	b.stats.unreturned.Add(-1)
	attrs := []any{"event_id", c.evt.ID, "type", c.evt.Type, "sender", c.evt.Sender, "ran", time.Since(c.started).Round(time.Millisecond)}
	if hd.kind == heldSetAside {
		b.count(res)
		b.log.InfoContext(c.ctx, "eventbus: set-aside handler call returned; its result is recorded by the next retry phase", attrs...)
		return
	}
	b.log.InfoContext(c.ctx, "eventbus: abandoned handler call returned; its result is ignored", attrs...)
}
