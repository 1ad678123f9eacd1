package eventbus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// maxErrorText bounds the stored last error (a panic's stack can be long).
const maxErrorText = 16 << 10

type verdict int8

const (
	unfinished verdict = iota // not run (stopping, or lease lost)
	handled
	skipped
	failed
	parked // FIFO event held behind a failed one of its sender
)

// result is what became of one record.
type result struct {
	verdict  verdict
	err      error
	attempts int           // failed: attempts so far, this one included
	retry    bool          // failed: the strategy schedules another attempt
	delay    time.Duration // failed and retry: wait before it
}

// invoke calls the handler for one event. A panic is recovered and counted
// as a failure, with its stack kept in the error.
func (b *EventBus) invoke(ctx context.Context, h ddd.DomainEventHandler, evt *ddd.DomainEvent) (res result) {
	if b.opts.HandlerTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.opts.HandlerTimeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			res = result{verdict: failed, err: fmt.Errorf("handler panic: %v\n%s", p, debug.Stack())}
		}
		switch res.verdict {
		case handled:
			b.stats.handled.Add(1)
		case skipped:
			b.stats.skipped.Add(1)
		case failed:
			b.stats.failed.Add(1)
			b.log.Warn("eventbus: handler failed", "event_id", evt.ID, "type", evt.Type, "sender", evt.Sender, "err", firstLine(res.err))
		}
	}()
	err := h(ctx, evt)
	switch {
	case err == nil:
		return result{verdict: handled}
	case errors.Is(err, ddd.ErrNoHandler):
		return result{verdict: skipped}
	default:
		return result{verdict: failed, err: err}
	}
}

// errorText is err as storable text: bounded, valid UTF-8, no NUL bytes
// (which PostgreSQL's text and MySQL's utf8mb4 reject).
func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorText {
		s = s[:maxErrorText] + "...(truncated)"
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

func firstLine(err error) string {
	s := err.Error()
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// nextAttempt asks the retry strategy about a failure. A permanent error, or
// a strategy that panics, gives up at once.
func (b *EventBus) nextAttempt(res *result) {
	if ddd.IsPermanent(res.err) {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			b.log.Error("eventbus: retry strategy panicked; giving up on the event", "panic", p)
			res.retry = false
		}
	}()
	res.delay, res.retry = b.opts.RetryStrategy.Next(res.attempts)
	res.delay = max(res.delay, 0)
}
