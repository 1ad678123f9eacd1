// A failed attempt: the retry strategy's verdict on it, and its log line.

package eventbus

import (
	"context"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// nextAttempt asks the retry strategy about a failure of evt, and logs the
// failure once, at WARN, with what follows: the attempt number and when the
// next one runs, or that the event becomes a dead letter. A permanent error,
// or a strategy that panics, gives up at once. ctx is the handler's, so a
// logging handler can add what it carries (a trace id, say).
func (b *EventBus) nextAttempt(ctx context.Context, evt *ddd.DomainEvent, res *result) {
	defer b.logFailure(ctx, evt, res)
	if ddd.IsPermanent(res.err) {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			b.log.ErrorContext(ctx, "eventbus: retry strategy panicked; giving up on the event", "event_id", evt.ID, "panic", p)
			res.retry = false
		}
	}()
	res.delay, res.retry = b.opts.RetryStrategy.Next(res.attempts)
	res.delay = max(res.delay, 0)
}

func (b *EventBus) logFailure(ctx context.Context, evt *ddd.DomainEvent, res *result) {
	attrs := []any{"event_id", evt.ID, "type", evt.Type, "sender", evt.Sender, "attempt", res.attempts, "err", firstLine(res.err)}
	if res.retry {
		b.log.WarnContext(ctx, "eventbus: handler failed; it will be retried",
			append(attrs, "retry_in", res.delay, "retry_at", time.Now().Add(res.delay).UTC().Format(time.RFC3339Nano))...)
		return
	}
	reason := "the retry strategy gave up"
	if ddd.IsPermanent(res.err) {
		reason = "the error is permanent"
	}
	b.log.WarnContext(ctx, "eventbus: handler failed; the event becomes a dead letter", append(attrs, "reason", reason)...)
}
